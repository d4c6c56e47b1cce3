//! Word of an owner's exit, as soon as the kernel has it: on Linux a pidfd per owner, which
//! becomes readable when its process exits, so the watcher reacts within milliseconds
//! instead of at its next look at `/proc`. Where no pidfd can be had (another OS, a kernel
//! before 5.3, a seccomp profile refusing `pidfd_open`, the open-file limit reached), the
//! owner is left to polling, which the watcher still does for those.

use std::collections::HashSet;

use tokio::sync::mpsc;

use crate::owner::Owner;

pub(super) struct Exits {
    tx: mpsc::UnboundedSender<Owner>,
    rx: mpsc::UnboundedReceiver<Owner>,
    /// Owners a notification stands for: never polled.
    notified: HashSet<Owner>,
}

impl Exits {
    pub(super) fn new() -> Exits {
        let (tx, rx) = mpsc::unbounded_channel();
        Exits { tx, rx, notified: HashSet::new() }
    }

    /// Starts waiting for `o`'s exit. False when no notification can be had: poll it then.
    /// Must run on a runtime with I/O enabled.
    pub(super) fn watch(&mut self, o: &Owner) -> bool {
        if self.notified.contains(o) {
            return true;
        }
        let ok = sys::notify_on_exit(o, self.tx.clone());
        if ok {
            self.notified.insert(o.clone());
        }
        ok
    }

    /// Whether `o`'s exit is told rather than polled.
    pub(super) fn is_notified(&self, o: &Owner) -> bool {
        self.notified.contains(o)
    }

    /// The next owner seen exit; waits until one does.
    pub(super) async fn next(&mut self) -> Owner {
        // The sender lives in `self`, so the channel never closes.
        let o = self.rx.recv().await.expect("the watcher holds a sender");
        self.notified.remove(&o);
        o
    }

    /// Owners already seen exit, without waiting.
    pub(super) fn drain(&mut self) -> Vec<Owner> {
        let mut out = Vec::new();
        while let Ok(o) = self.rx.try_recv() {
            self.notified.remove(&o);
            out.push(o);
        }
        out
    }
}

/// A pidfd per owner: with hundreds of them the default soft limit of open files (often
/// 1024) would be reached, and the watcher's own connections to the daemon refused. The
/// hard limit is this process's to take.
pub(super) fn raise_open_file_limit() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            let _ = setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum });
        }
    }
}

#[cfg(target_os = "linux")]
mod sys {
    use rustix::process::{pidfd_open, Pid, PidfdFlags};
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;
    use tokio::sync::mpsc::UnboundedSender;

    use crate::owner::{Liveness, Owner};

    /// Opens a pidfd on `o`'s PID, then checks that the PID still is `o` (its start time):
    /// a PID reused meanwhile is never taken for the owner. One that is already gone is
    /// told at once.
    pub(super) fn notify_on_exit(o: &Owner, tx: UnboundedSender<Owner>) -> bool {
        if o.host != Owner::current().host {
            return false; // another place's PID means nothing here
        }
        let Some(pid) = i32::try_from(o.pid).ok().and_then(Pid::from_raw) else { return false };
        let fd = match pidfd_open(pid, PidfdFlags::empty()) {
            Ok(fd) => fd,
            // No such process: it is gone, and says so now.
            Err(rustix::io::Errno::SRCH) => return tx.send(o.clone()).is_ok(),
            Err(_) => return false,
        };
        if o.liveness() != Liveness::Alive {
            return tx.send(o.clone()).is_ok();
        }
        // Deprecated for a `T` whose descriptor could change under the registration; an
        // `OwnedFd` moved into the `AsyncFd` cannot, and its successor is `unsafe`, which
        // this crate denies.
        #[allow(deprecated)]
        let Ok(fd) = AsyncFd::with_interest(fd, Interest::READABLE) else {
            return false;
        };
        let o = o.clone();
        tokio::spawn(async move {
            // Readable once the process has exited; an error means the same for our purpose
            // (the watcher then judges it by `/proc`, which never calls a live one dead).
            let _ = fd.readable().await;
            let _ = tx.send(o);
        });
        true
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use tokio::sync::mpsc::UnboundedSender;

    use crate::owner::Owner;

    /// No exit notification is used here (kqueue's `EVFILT_PROC` would do on macOS and the
    /// BSDs; not written, as nothing here could test it): owners are polled.
    pub(super) fn notify_on_exit(_: &Owner, _: UnboundedSender<Owner>) -> bool {
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_child_that_exits_is_told_and_one_of_another_place_is_left_to_polling() {
        let mut child = std::process::Command::new("sleep").arg("0.2").spawn().unwrap();
        let Some(o) = Owner::local(child.id()) else {
            let _ = child.wait(); // no /proc here: nothing to judge by
            return;
        };
        let mut exits = Exits::new();
        assert!(exits.watch(&o), "no pidfd for a live child");
        assert!(exits.is_notified(&o));
        let reaper = std::thread::spawn(move || child.wait());
        let told = tokio::time::timeout(Duration::from_secs(30), exits.next()).await.expect("no word of the exit");
        assert_eq!(told, o);
        assert!(!exits.is_notified(&o));
        reaper.join().unwrap().unwrap();
        let elsewhere = Owner { host: format!("{}-elsewhere", o.host), ..o };
        assert!(!exits.watch(&elsewhere));
        assert!(exits.drain().is_empty());
    }

    #[tokio::test]
    async fn an_owner_already_gone_is_told_at_once() {
        let me = Owner::current();
        // This process's PID with another start time: a reused PID, so not the owner.
        let gone = Owner { start: me.start + 1, ..me.clone() };
        if !me.is_verified() {
            return;
        }
        let mut exits = Exits::new();
        assert!(exits.watch(&gone));
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), exits.next()).await.unwrap(), gone);
    }
}
