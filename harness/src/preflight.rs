//! The process-start hook: in a test binary that runs tests (not one that nextest only asks
//! to list them), install the signal handlers early, on a background thread, so that
//! nothing before `main` can hang or panic. The session's pre-test check starts with the
//! first context, which a binary whose linker dropped this hook has too: it loses nothing.
//! The hook is also how a re-executed test binary becomes the session's watcher.

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
    // The pre-test check starts with the first context (see `sweep::start_preflight`).
    let _ = std::thread::Builder::new().name("docker-harness-signals".into()).spawn(crate::signals::install);
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
