//! `looptree bench --url` against a real `looptree serve`: the loop workloads, small, over
//! HTTP; the JSON record's numbers must add up as design.md defines them.

mod common;

use common::Server;
use serde_json::Value;
use std::process::Command;

fn bench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_looptree"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run looptree bench");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn small_workloads_report_consistent_numbers() {
    let server = Server::start(&[]);
    let dir = std::env::temp_dir().join(format!("looptree-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("run.json");
    let svg = dir.join("run.svg");
    #[rustfmt::skip]
    let args = vec![
        "--url", &server.base, "--label", "looptree",
        "--workload", "agent-loop", "--workload", "fanout", "--workload", "tree",
        "--agents", "2", "--iterations", "3", "--system-tokens", "150", "--task-tokens", "20",
        "--tool-result-tokens", "30", "--reply-tokens", "6",
        "--fanout-prompts", "1", "--fanout-prompt-tokens", "40", "--fanout-n", "3", "--fanout-max-tokens", "6",
        "--root-tokens", "40", "--segment-tokens", "4", "--branch", "2", "--depth", "2",
        "--json", json.to_str().unwrap(), "--plot", svg.to_str().unwrap(),
    ];
    let (ok, stdout, stderr) = bench(&args);
    assert!(ok, "bench failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("| looptree | agent-loop |"),
        "no table row:\n{stdout}"
    );
    let record: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let runs = record["runs"].as_array().unwrap();
    let names: Vec<&str> = runs
        .iter()
        .map(|r| r["workload"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["agent-loop", "fanout", "tree"]);
    // Trajectories: one per agent reply; n per fanout prompt; one per tree leaf.
    let want_trajectories = [2 * 3, 3, 2 * 2];
    // Requests: every agent turn; one n=3 request (looptree takes n); one per tree node
    // with children (1 + 2), each asking for `branch` samples.
    let want_requests = [2 * 3, 1, 3];
    for ((run, want_t), want_r) in runs.iter().zip(want_trajectories).zip(want_requests) {
        let s = &run["summary"];
        let name = run["workload"].as_str().unwrap();
        assert_eq!(u(&s["errors"]), 0, "{name}: {s}");
        assert_eq!(run["flavor"], "looptree", "{name}");
        assert_eq!(run["n_split"], false, "{name}: looptree takes n > 1");
        assert_eq!(u(&s["trajectories"]), want_t, "{name}: {s}");
        assert_eq!(u(&s["requests"]), want_r, "{name}: {s}");
        assert_eq!(
            run["requests"].as_array().unwrap().len() as u64,
            want_r,
            "{name}"
        );
        let distinct = u(&s["distinct_trajectories"]);
        assert!(distinct >= 1 && distinct <= want_t, "{name}: {s}");
        let (prompt, cached, generated, computed) = (
            u(&s["prompt_tokens"]),
            u(&s["cached_tokens"]),
            u(&s["generated_tokens"]),
            u(&s["computed_tokens"]),
        );
        assert!(cached <= prompt && generated > 0, "{name}: {s}");
        assert_eq!(computed, prompt - cached + generated, "{name}: {s}");
        let dtpb = s["dtpb"].as_f64().unwrap();
        assert!(
            (dtpb - distinct as f64 * 1e6 / computed as f64).abs() < 1e-6 * dtpb,
            "{name}: {s}"
        );
        // The limit comes from the server's own /tokenize: every token once. It can be no
        // more than sending everything uncached, and the engine (cold cache per workload,
        // one shared chat-template token or so aside) cannot compute fewer.
        let limit = s["limit_tokens"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: no limit: {}", run["limit_error"]));
        assert!(limit > 0 && limit <= prompt + generated, "{name}: {s}");
        assert!(
            limit <= computed + 8,
            "{name}: limit {limit} above computed {computed}: {s}"
        );
    }
    // The agents share a system prompt and re-send their history: most of it is cached.
    let agent = &runs[0]["summary"];
    assert!(
        u(&agent["cached_tokens"]) * 2 > u(&agent["prompt_tokens"]),
        "agent-loop barely cached: {agent}"
    );
    // The fanout prompt is computed once for its three samples.
    let fan = &runs[1]["summary"];
    assert!(
        u(&fan["computed_tokens"]) < u(&fan["prompt_tokens"]) + u(&fan["generated_tokens"]),
        "{fan}"
    );
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.starts_with("<svg") && chart.contains("agent-loop"),
        "{chart}"
    );

    // Every request carried a seed, and looptree honours them: the same workloads again,
    // now on a warm prefix cache, give the same outputs.
    let again_json = dir.join("again.json");
    let mut again_args = args.clone();
    *again_args
        .iter_mut()
        .find(|a| **a == json.to_str().unwrap())
        .unwrap() = again_json.to_str().unwrap();
    let (ok, _, stderr) = bench(&again_args);
    assert!(ok, "second bench failed:\n{stderr}");
    let again: Value =
        serde_json::from_str(&std::fs::read_to_string(&again_json).unwrap()).unwrap();
    let texts = |run: &Value| {
        let mut t: Vec<String> = run["requests"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r["choices"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["text"].as_str().unwrap().to_string())
            })
            .collect();
        t.sort();
        t
    };
    for (first, second) in runs.iter().zip(again["runs"].as_array().unwrap()) {
        assert_eq!(first["request_seeds"], true);
        assert_eq!(
            texts(first),
            texts(second),
            "{}: seeded outputs differ between runs",
            first["workload"]
        );
    }

    // --compare alone re-reads the record and prints the same table rows.
    let (ok, again, stderr) = bench(&["--compare", json.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    for line in stdout.lines().filter(|l| l.starts_with("| looptree |")) {
        assert!(again.contains(line), "{line} missing from:\n{again}");
    }
    server.wait_idle();
    assert_eq!(
        server.metric("looptree_kv_locked_tokens"),
        0.0,
        "the bench left KV blocks locked"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn edit_workload_sends_the_file_back_and_forth() {
    let server = Server::start(&[]);
    let dir = std::env::temp_dir().join(format!("looptree-bench-edit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("edit.json");
    #[rustfmt::skip]
    let args = [
        "--url", &server.base, "--label", "looptree", "--workload", "edit",
        "--edit-iterations", "2", "--file-tokens", "60", "--edit-max-tokens", "8", "--predict",
        "--json", json.to_str().unwrap(),
    ];
    let (ok, stdout, stderr) = bench(&args);
    assert!(ok, "bench failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("| looptree | edit |") && stdout.contains("prediction sent"),
        "{stdout}"
    );
    let record: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let run = &record["runs"][0];
    let s = &run["summary"];
    assert_eq!(run["workload"], "edit");
    assert_eq!(run["params"]["predict"], true);
    assert_eq!(run["params"]["temperature"], 0.0);
    assert_eq!(
        (u(&s["errors"]), u(&s["requests"]), u(&s["trajectories"])),
        (0, 2, 2),
        "{s}"
    );
    // The second turn re-sends the first (file, request and reply): cached.
    let requests = run["requests"].as_array().unwrap();
    assert!(
        u(&requests[1]["cached_tokens"]) >= u(&requests[0]["prompt_tokens"]),
        "{s}"
    );
    // Draft counters: absent from a looptree without speculation, else counted per source.
    assert!(
        run["drafts"].is_null() || run["drafts"]["sources"].is_object(),
        "{}",
        run["drafts"]
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bench_without_a_server_or_with_a_dead_one_fails_clearly() {
    let (ok, _, stderr) = bench(&[]);
    assert!(!ok && stderr.contains("--url"), "{stderr}");
    // Nothing listens on port 9 here.
    let (ok, _, stderr) = bench(&["--url", "http://127.0.0.1:9", "--workload", "fanout"]);
    assert!(!ok && stderr.starts_with("error:"), "{stderr}");
}
