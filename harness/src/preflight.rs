//! The process-start hook: in a test binary that runs tests (not one that nextest only asks
//! to list them), start the session's pre-test check and the signal handlers early, on a
//! background thread, so that nothing before `main` can hang or panic. Contexts await the
//! same once-per-session check, so a binary whose linker dropped this hook loses nothing.
//! The hook is also how a re-executed test binary becomes the session's watcher.

use std::time::Duration;

#[allow(unsafe_code)] // `ctor` needs it: code before main must not assume Rust's runtime
mod hook {
    #[ctor::ctor(unsafe)]
    fn docker_harness_process_start() {
        super::on_start();
    }
}

fn on_start() {
    // This binary was re-executed to be the session's watcher: that is all it does.
    if let Some(session) = crate::watcher::requested() {
        std::process::exit(crate::watcher::main(&session));
    }
    if !is_running_tests() {
        return;
    }
    let _ = std::thread::Builder::new().name("docker-harness-preflight".into()).spawn(|| {
        crate::signals::install();
        // Errors surface again, with their full text, in the first context that needs it.
        let _ = crate::blocking::wait(crate::sweep::preflight(), Duration::from_secs(120));
    });
}

/// Only test binaries (cargo puts them in `deps/`) that are about to run tests.
fn is_running_tests() -> bool {
    let listing = std::env::args().any(|a| a == "--list" || a == "--help" || a == "-h");
    let in_deps = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|n| n == "deps"))
        .unwrap_or(false);
    let disabled = std::env::var_os("DOCKER_HARNESS_NO_HOOK").is_some();
    in_deps && !listing && !disabled
}
