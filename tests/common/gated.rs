//! Small trees of gated ports: a port whose build phase waits for a gate
//! file (`ports/.gate-TAG/open`, outside every port directory, so it changes
//! no build key) until the test opens it, so a test can look at a run while
//! that build is still running.

use super::Env;

/// A test port in category `misc`: installs `bin/NAME`; `deps` are other
/// test ports (build dependencies); a gated port's build phase waits for
/// `ports/.gate-TAG/open`.
pub struct TestPort<'a> {
    pub name: &'a str,
    pub deps: &'a [&'a str],
    pub gated: bool,
}

pub fn gated_env(tag: &str, ports: &[TestPort]) -> Env {
    let env = Env { dir: tempfile::tempdir().unwrap() };
    super::copy_tree(&super::repo().join("ports-testdata/Mk"), &env.ports().join("Mk"));
    std::fs::create_dir_all(env.ports().join(format!(".gate-{tag}"))).unwrap();
    for port in ports {
        let dir = env.ports().join("misc").join(port.name);
        std::fs::create_dir_all(&dir).unwrap();
        let deps: Vec<String> = port.deps.iter().map(|d| format!("{d}:misc/{d}")).collect();
        let wait = if port.gated {
            format!(
                "\t@echo \"waiting for ${{PORTSDIR}}/.gate-{tag}/open\"\n\
                 \t@while [ ! -e ${{PORTSDIR}}/.gate-{tag}/open ]; do sleep 0.1; done\n"
            )
        } else {
            String::new()
        };
        let makefile = format!(
            "PORTNAME=\t{name}\nPORTVERSION=\t1.0\nCATEGORIES=\tmisc\nDISTFILES=\n\n\
             MAINTAINER=\ttests@portsynth.example\nCOMMENT=\tTest port {name}\n\n\
             BUILD_DEPENDS=\t{deps}\n\nPLIST_FILES=\tbin/{name}\n\n\
             do-build:\n{wait}\t@echo building {name}\n\n\
             do-install:\n\tmkdir -p ${{STAGEDIR}}${{PREFIX}}/bin\n\
             \techo 'exit 0' > ${{STAGEDIR}}${{PREFIX}}/bin/{name}\n\
             \tchmod 755 ${{STAGEDIR}}${{PREFIX}}/bin/{name}\n\n\
             .include <bsd.port.mk>\n",
            name = port.name,
            deps = deps.join(" "),
        );
        std::fs::write(dir.join("Makefile"), makefile).unwrap();
        std::fs::write(dir.join("pkg-descr"), format!("Test port {}.\n", port.name)).unwrap();
    }
    // The slots the tests ask for, whatever the load of the machine running them.
    env.write_config("throttle = false\n");
    env
}

pub fn open_gate(env: &Env, tag: &str) {
    std::fs::write(env.ports().join(format!(".gate-{tag}/open")), "").unwrap();
}
