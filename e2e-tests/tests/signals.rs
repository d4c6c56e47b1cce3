//! SIGTERM and SIGINT: a test process removes its own resources, then exits with the
//! conventional status (143 and 130).

mod common;

use std::time::Instant;

use common::{raw, signal, spawn_holder};

#[test]
#[ignore = "run as a child"]
fn child_holds_resources() {
    common::holder_role();
}

async fn signalled_holder_cleans_up(sig: &str, shape: &str, code: i32) {
    let name = common::unique(&format!("signals-{sig}"));
    let mut cmd = common::child("child_holds_resources", &[("DH_SHAPE", shape), ("DH_TEST_NAME", &name)]);
    let (mut child, held) = spawn_holder(&mut cmd);
    let docker = raw().await;
    assert_eq!(held.count_present(&docker).await, held.total(), "everything exists before the signal");
    let sent = Instant::now();
    signal(&child, sig);
    let status = child.wait().unwrap();
    println!("{sig}: the child exited {:?} after {:?}", status.code(), sent.elapsed());
    assert_eq!(status.code(), Some(code), "conventional exit status for {sig}");
    assert_eq!(held.count_present(&docker).await, 0, "left behind after {sig}: {held:?}");
}

#[tokio::test]
async fn sigterm_removes_three_containers_two_networks_and_two_volumes_before_exit() {
    signalled_holder_cleans_up("TERM", "3,2,2", 143).await;
}

#[tokio::test]
async fn sigint_removes_the_process_resources_before_exit() {
    signalled_holder_cleans_up("INT", "1,1,1", 130).await;
}
