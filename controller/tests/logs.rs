//! The controller binary's logs as `kubectl logs` shows them: a container's
//! output is a pipe, not a terminal, so the log lines must carry no ANSI
//! colour codes. Runs the real binary against `ballast-fake-apiserver`
//! until it has logged that it plans, with stdout and stderr piped.

mod support;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

const ESC: u8 = 0x1b;

/// A kubeconfig naming the fake server, without credentials.
fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters: [{{name: fake, cluster: {{server: \"{url}\"}}}}]\n\
         users: [{{name: nobody, user: {{}}}}]\n\
         contexts: [{{name: fake, context: {{cluster: fake, user: nobody, namespace: default}}}}]\n\
         current-context: fake\n"
    )
}

/// Reads `from` line by line into `into` until a line contains `until`
/// (true) or the stream ends (false).
async fn read_until(
    from: &mut BufReader<impl AsyncRead + Unpin>,
    into: &mut Vec<u8>,
    until: &str,
) -> bool {
    loop {
        let start = into.len();
        match from.read_until(b'\n', into).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {
                if String::from_utf8_lossy(&into[start..]).contains(until) {
                    return true;
                }
            }
        }
    }
}

#[tokio::test]
async fn logs_to_a_pipe_carry_no_colour_codes() {
    let s = support::server().await;
    let dir = std::env::temp_dir().join(format!("ballast-logs-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("kubeconfig");
    std::fs::write(&config, kubeconfig(&s.url())).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_ballast-controller"))
        .args([
            "run",
            "--insecure",
            "--identity=logs-test",
            "--lease-namespace=default",
            "--metrics-addr=127.0.0.1:0",
            "--link-addr=127.0.0.1:0",
        ])
        .env("KUBECONFIG", &config)
        .env("RUST_LOG", "info")
        // tracing-subscriber leaves colour out under NO_COLOR: the test
        // must not pass because the environment running it sets it.
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the controller binary starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut stdout = child.stdout.take().unwrap();
    let mut logged = Vec::new();
    // "caches synced; planning": the controller reached the API, synced
    // and logged several lines on the way (the --insecure warning first).
    let planned = tokio::time::timeout(
        Duration::from_secs(30),
        read_until(&mut stderr, &mut logged, "caches synced"),
    )
    .await;
    child.start_kill().expect("stopping the controller");
    let _ = child.wait().await;
    // What else it wrote, on either stream, until it died.
    let mut rest = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut rest)
        .await
        .unwrap();
    logged.extend(rest);
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut out)
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let text = String::from_utf8_lossy(&logged);
    assert!(
        matches!(planned, Ok(true)),
        "the controller did not log that it plans: {text}"
    );
    for (stream, bytes) in [("stderr", &logged), ("stdout", &out)] {
        assert!(
            !bytes.contains(&ESC),
            "ESC (0x1b) on {stream}, which is a pipe: {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    // A plain line: level and target between spaces, not colour codes.
    assert!(
        text.lines()
            .any(|l| l.contains(" INFO ballast_controller::k8s::run: caches synced")),
        "no plain log line on stderr: {text}"
    );
}
