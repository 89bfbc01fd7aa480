//! The Slurm testbed (`scripts/slurm-testbed`, docs/SLURM.md): a real
//! cluster of munged, slurmdbd (on a private MariaDB), slurmctld and three
//! slurmd, each node in its own network and UTS namespace. Jobs land on
//! distinct nodes, accounting records the node of each job, jobs see the
//! host's file system, a killed node is marked down, and `down` leaves
//! nothing behind. As root.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::slurm::{daemon_pids, expand_nodelist, host_links, lock, processes_in_netns, testbed_ok, Testbed};
use common::{mounts, processes_with};

#[test]
fn expands_host_lists() {
    assert_eq!(expand_nodelist("node[1-3]"), ["node1", "node2", "node3"]);
    assert_eq!(expand_nodelist("node[1,3-4],ctl"), ["node1", "node3", "node4", "ctl"]);
    assert_eq!(expand_nodelist("n[08-10]"), ["n08", "n09", "n10"]);
    assert_eq!(expand_nodelist("node2"), ["node2"]);
    assert!(expand_nodelist("").is_empty());
}

#[test]
fn testbed_runs_jobs_on_its_nodes_and_leaves_nothing() {
    let lock = lock();
    // From a clean state, so that "as before" means before the testbed.
    testbed_ok(&["down"]);
    let links_before = host_links();
    let named_netns_before = ip_netns();
    let mounts_before = mounts();
    let daemons_before = daemon_pids();

    let started = Instant::now();
    let testbed = Testbed::up(3, lock);
    let up_took = started.elapsed();
    let _guard = DownOnPanic(testbed.state_dir.clone());
    assert_eq!(testbed.nodes, ["node1", "node2", "node3"]);
    assert_eq!(host_links(), links_before, "up added links to the host's network namespace");
    let new_mounts: Vec<_> = mounts().difference(&mounts_before).cloned().collect();
    assert!(new_mounts.is_empty(), "up mounted {new_mounts:?}");
    let netns = testbed.netns_ids();
    let host_netns = std::fs::read_link("/proc/self/ns/net").unwrap().to_string_lossy().into_owned();
    let distinct: BTreeSet<&String> = netns.iter().filter(|id| **id != host_netns).collect();
    assert_eq!(distinct.len(), 4, "a network namespace for the controller and one per node: {netns:?}");

    // One job step per node: three hostnames, one per node.
    let out = testbed.run_ok("srun", &["-N3", "hostname"]);
    let hosts: BTreeSet<&str> = out.lines().collect();
    assert_eq!(hosts, BTreeSet::from(["node1", "node2", "node3"]), "srun -N3 hostname printed {out:?}");

    // One batch job per node, at the same time; each writes to the host's
    // file system, which the test reads.
    let shared = tempfile::tempdir().unwrap();
    let jobs: Vec<(String, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = testbed
            .nodes
            .iter()
            .map(|node| {
                let testbed = &testbed;
                let dir = shared.path();
                scope.spawn(move || {
                    let script = format!(
                        "hostname > {0}/{node}.host && echo written by $SLURM_JOB_ID > {0}/{node}.file",
                        dir.display()
                    );
                    let out = format!("{}/{node}.out", dir.display());
                    let (job, output) =
                        testbed.sbatch_wait(&["-w", node, "-J", "portsynth-testbed", "-o", &out, "--wrap", &script]);
                    assert!(output.status.success(), "the job on {node}: {}", common::dump(&output));
                    (node.clone(), job)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ran_on = BTreeSet::new();
    for (node, job) in &jobs {
        let host = std::fs::read_to_string(shared.path().join(format!("{node}.host"))).unwrap();
        assert_eq!(host.trim(), node, "the job's hostname");
        let file = std::fs::read_to_string(shared.path().join(format!("{node}.file"))).unwrap();
        assert_eq!(file.trim(), format!("written by {job}"), "the file the job wrote on {node}");
        // The accounting record says which node ran it.
        let record = testbed.sacct(*job, Duration::from_secs(20));
        assert_eq!(record["State"], "COMPLETED", "{record:?}");
        assert_eq!(record["NodeList"], *node, "{record:?}");
        ran_on.insert(record["NodeList"].clone());
        // slurmctld's own record, with the job's name (sacct may have
        // "allocation" for a job this short: see Testbed::jobcomp).
        let line = testbed.jobcomp(*job, Duration::from_secs(10));
        assert_eq!(
            (line["Name"].as_str(), line["NodeList"].as_str()),
            ("portsynth-testbed", node.as_str()),
            "{line:?}"
        );
        assert_eq!(line["JobState"], "COMPLETED", "{line:?}");
    }
    assert!(ran_on.len() >= 2, "the jobs ran on {ran_on:?}");

    // A lost node, with a job running on it: Slurm sees the node stop
    // responding, marks it down, and records the job's run as NODE_FAIL on
    // it (the job itself is requeued: pinned to node2, it waits for it).
    let lost = testbed.sbatch(&["-w", "node2", "-J", "portsynth-lost", "-o", "/dev/null", "--wrap", "sleep 300"]);
    testbed.wait_job_state(lost, "RUNNING", Duration::from_secs(20));
    let started = Instant::now();
    testbed.kill_node("node2");
    let (state, _) = testbed.wait_node_state("node2", Duration::from_secs(60), |s| s.starts_with("down"));
    let down_took = started.elapsed();
    let reason = testbed.run_ok("sinfo", &["-h", "-N", "-n", "node2", "-o", "%E"]);
    assert!(reason.contains("Not responding"), "node2 is {state}, reason {reason:?}");
    assert!(testbed.node_state("node1") == "idle" && testbed.node_state("node3") == "idle", "the others are still up");
    let failed = testbed.wait_sacct(lost, Duration::from_secs(20), |attempts| {
        attempts.iter().find(|r| r["State"] == "NODE_FAIL").cloned()
    });
    assert_eq!(failed["NodeList"], "node2", "{failed:?}");
    let node2: Vec<_> = processes_in_netns(&testbed.netns_id("node2"));
    assert!(node2.len() == 1 && node2[0].contains("sleep infinity"), "only its namespace's holder is left: {node2:?}");
    testbed.run_ok("scancel", &[&lost.to_string()]);
    // And it comes back.
    testbed.start_node("node2");
    let out = testbed.run_ok("srun", &["-w", "node2", "hostname"]);
    assert_eq!(out.trim(), "node2");

    let state_dir = testbed.state_dir.clone();
    let started = Instant::now();
    testbed.down();
    let down_cmd_took = started.elapsed();
    assert!(!state_dir.exists(), "{} is left", state_dir.display());
    assert!(
        processes_with(state_dir.to_str().unwrap()).is_empty(),
        "{:?}",
        processes_with(state_dir.to_str().unwrap())
    );
    let new_daemons: Vec<_> = daemon_pids().difference(&daemons_before).cloned().collect();
    assert!(new_daemons.is_empty(), "daemons left running: {new_daemons:?}");
    for id in &netns {
        let left = processes_in_netns(id);
        assert!(left.is_empty(), "processes left in the testbed's namespace {id}: {left:?}");
    }
    assert_eq!(host_links(), links_before, "links left");
    assert_eq!(ip_netns(), named_netns_before, "ip netns changed");
    let new_mounts: Vec<_> = mounts().difference(&mounts_before).cloned().collect();
    assert!(new_mounts.is_empty(), "mounts left: {new_mounts:?}");
    eprintln!(
        "slurm testbed: up {:.1} s, node2 marked {state} {:.1} s after kill-node, down {:.1} s",
        up_took.as_secs_f64(),
        down_took.as_secs_f64(),
        down_cmd_took.as_secs_f64()
    );
}

fn ip_netns() -> String {
    let output = std::process::Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// On a failing assertion: prints the tails of the testbed's logs, then
/// tears it down (nothing is left running after a failed test).
struct DownOnPanic(PathBuf);

impl Drop for DownOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for entry in std::fs::read_dir(self.0.join("log")).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- {}:\n{}", entry.path().display(), lines[lines.len().saturating_sub(15)..].join("\n"));
        }
        let _ = std::process::Command::new(common::slurm::script()).arg("down").status();
    }
}
