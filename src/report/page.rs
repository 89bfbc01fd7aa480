//! `index.html` of the HTML report: a maud template (its text auto-escaped)
//! holding the page's skeleton, with its style sheet and script inlined so
//! the one file works offline from `file://` or any static server.
//!
//! The page has no data of its own beyond the run's command and id in its
//! title: the script (`page.js`) loads `data.js` ([`super::html`]) with a
//! `<script>` element, renders every section from it with DOM calls that
//! set text only (`textContent`, never `innerHTML`), and loads it again
//! every few seconds until the data says the run has ended.

use maud::{html, Markup, PreEscaped, DOCTYPE};

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// The page of the run `run` of `command`.
pub fn render(command: &str, run: &str) -> String {
    page(command, run).into_string()
}

fn page(command: &str, run: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "portsynth " (command) " — " (run) }
                style { (PreEscaped(STYLE)) }
            }
            body data-state="loading" {
                (header())
                (section("slots-section", "Slots", slots_table()))
                (section("failures-section", "Failures", html! { div #failures {} }))
                (section("diff-section", "Since the previous run", html! { div #diff { p.empty { "Shown when the run has ended." } } }))
                (section("ports-section", "Ports", ports_table()))
                (section("skipped-section", "Skipped", html! { ul #skipped {} }))
                (section("timeline-section", "Timeline", timeline()))
                (section("phases-section", "Time per phase", html! { div #phases {} }))
                (section("history-section", "History of the build base", html! { div #history {} }))
                (section("notices-section", "Notices", html! { ul #notices {} }))
                noscript { p { "This report is drawn by JavaScript; the same facts are in the logs next to it." } }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

fn header() -> Markup {
    html! {
        header {
            h1 { "portsynth " span #run-command {} span #run-status .status {} }
            p #run-id {}
            progress #run-progress value="0" max="1" {}
            dl #run-figures {}
            p #run-waiting {}
            p #updated {}
        }
    }
}

fn section(id: &str, title: &str, body: Markup) -> Markup {
    html! {
        section id=(id) {
            h2 { (title) }
            (body)
        }
    }
}

fn slots_table() -> Markup {
    html! {
        table #slots {
            thead { tr { th { "Slot" } th { "Port" } th { "Phase" } th { "Elapsed" } th { "Log lines" } } }
            tbody {}
        }
    }
}

/// The columns of the ports table: the data key each sorts by, and its title.
const PORT_COLUMNS: [(&str, &str); 9] = [
    ("origin", "Port"),
    ("status", "Status"),
    ("phase", "Phase"),
    ("seconds", "Duration"),
    ("make_jobs", "Jobs"),
    ("slot", "Slot"),
    ("why", "Built because"),
    ("reason", "Reason"),
    ("log", "Log"),
];

fn ports_table() -> Markup {
    html! {
        div .controls {
            label { "Filter " input #port-filter type="search" placeholder="port, reason…"; }
            label {
                " Status "
                select #status-filter {
                    option value="" { "any" }
                    @for status in ["running", "success", "failed", "interrupted", "skipped", "not_buildable", "ignored", "up_to_date"] {
                        option value=(status) { (status.replace('_', " ")) }
                    }
                }
            }
            span #ports-shown {}
        }
        table #ports {
            thead {
                tr {
                    @for (key, title) in PORT_COLUMNS {
                        th data-key=(key) { (title) }
                    }
                }
            }
            tbody {}
        }
    }
}

fn timeline() -> Markup {
    html! {
        p .legend {
            span .swatch .success {} "success "
            span .swatch .failed {} "failed "
            span .swatch .interrupted {} "interrupted "
            span .swatch .running {} "running "
            span .swatch .critical {} "critical path (longest chain of dependencies by duration)"
        }
        div #timeline {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_is_escaped_and_the_script_inlined() {
        let page = render("build <b>&", "run\"1");
        assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        assert!(page.contains("<title>portsynth build &lt;b&gt;&amp; — run&quot;1</title>"), "{page}");
        assert!(page.contains("data.js"), "the script loads the data");
        assert!(!SCRIPT.contains("</script"), "the inlined script cannot end its element");
        assert!(!SCRIPT.contains("innerHTML"), "the script puts data into the page as text only");
        for remote in ["src=\"http", "href=\"http", "url(http", "@import"] {
            assert!(!page.contains(remote), "nothing is loaded from a network: {remote}");
        }
    }
}
