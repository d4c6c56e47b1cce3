//! Reading a build's output stream: which step it is at, which images and containers it
//! made (its own, to remove with it) and which it was lent (a `FROM`, or a step answered
//! from cache: those may belong to another build, even another session's, and are never
//! its to remove), and its last lines for an error.
//!
//! The classic builder prints `Step 3/5 : RUN make`, then ` ---> Using cache` or
//! ` ---> Running in <container>`, and ends each step with ` ---> <image>`. Podman's
//! compatible API prints `STEP 3/5: RUN make` and `--> Using cache <image>` / `--> <image>`
//! (written for, not tested here).

use std::collections::VecDeque;

/// How many of the build's last output lines an error shows.
const TAIL: usize = 15;

#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// The step being run, as printed.
    pub(crate) step: Option<String>,
    in_from: bool,
    cached: bool,
    /// Images the build made, in order.
    pub(crate) images: Vec<String>,
    /// Intermediate containers its steps ran in.
    pub(crate) containers: Vec<String>,
    tail: VecDeque<String>,
    partial: String,
}

impl Progress {
    /// Feeds a chunk of the stream (it may hold several lines, or part of one). True when
    /// the chunk made an image or a container, so the record is worth writing again.
    pub(crate) fn feed(&mut self, chunk: &str) -> bool {
        self.partial.push_str(chunk);
        let mut changed = false;
        while let Some(nl) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=nl).collect();
            changed |= self.line(line.trim_end());
        }
        changed
    }

    /// The build's last lines, the unfinished one included.
    pub(crate) fn tail(&self) -> Vec<String> {
        let mut t: Vec<String> = self.tail.iter().cloned().collect();
        if !self.partial.trim().is_empty() {
            t.push(self.partial.trim_end().to_string());
        }
        t
    }

    fn line(&mut self, line: &str) -> bool {
        if line.trim().is_empty() {
            return false;
        }
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
        let trimmed = line.trim();
        if let Some(instr) = step_instruction(trimmed) {
            self.step = Some(trimmed.to_string());
            self.in_from = instr.eq_ignore_ascii_case("FROM");
            self.cached = false;
            return false;
        }
        let Some(arrow) = trimmed.strip_prefix("--->").or_else(|| trimmed.strip_prefix("-->")) else {
            return false;
        };
        let arrow = arrow.trim();
        if let Some(rest) = arrow.strip_prefix("Using cache") {
            // Podman names the cached image on the same line; either way it is lent.
            let _ = rest;
            self.cached = true;
            return false;
        }
        if let Some(container) = arrow.strip_prefix("Running in ") {
            self.containers.push(container.trim().to_string());
            return true;
        }
        if is_image_id(arrow) && !self.in_from && !self.cached {
            if !self.images.iter().any(|i| i == arrow) {
                self.images.push(arrow.to_string());
            }
            return true;
        }
        false
    }
}

/// The instruction of a `Step 3/5 : RUN make` (or Podman's `STEP 3/5: RUN make`) line.
fn step_instruction(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("Step ").or_else(|| line.strip_prefix("STEP "))?;
    let (counter, after) = rest.split_once(':')?;
    let counter = counter.trim();
    let (n, m) = counter.split_once('/')?;
    if !(n.chars().all(|c| c.is_ascii_digit()) && m.chars().all(|c| c.is_ascii_digit())) {
        return None;
    }
    after.split_whitespace().next()
}

/// A short (12) or full (64) hex image ID, with or without `sha256:`.
fn is_image_id(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    (12..=64).contains(&hex.len()) && hex.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSIC: &str = "Step 1/7 : ARG BASE\nStep 2/7 : FROM ${BASE} AS builder\n ---> 0a1b2c3d4e5f\n\
        Step 3/7 : COPY . /src\n ---> Using cache\n ---> 111111111111\n\
        Step 4/7 : RUN tr a-z A-Z < /src/g > /out\n ---> Running in 9f9f9f9f9f9f\n\
        Removing intermediate container 9f9f9f9f9f9f\n ---> 222222222222\n\
        Step 5/7 : FROM ${BASE}\n ---> 0a1b2c3d4e5f\nStep 6/7 : COPY --from=builder /out /g\n ---> 333333333333\n\
        Step 7/7 : LABEL docker-harness.managed=true\n ---> Running in 8e8e8e8e8e8e\n\
        Removing intermediate container 8e8e8e8e8e8e\n ---> 444444444444\nSuccessfully built 444444444444\n";

    #[test]
    fn a_build_owns_what_it_made_but_not_its_bases_or_cache_hits() {
        let mut p = Progress::default();
        // Chunks split in the middle of lines, as a stream delivers them.
        for chunk in CLASSIC.as_bytes().chunks(7) {
            p.feed(std::str::from_utf8(chunk).unwrap());
        }
        assert_eq!(p.images, ["222222222222", "333333333333", "444444444444"]);
        assert_eq!(p.containers, ["9f9f9f9f9f9f", "8e8e8e8e8e8e"]);
        assert_eq!(p.step.as_deref(), Some("Step 7/7 : LABEL docker-harness.managed=true"));
    }

    #[test]
    fn podman_steps_and_cache_lines_read_the_same() {
        let mut p = Progress::default();
        p.feed("STEP 1/3: FROM busybox\nSTEP 2/3: RUN true\n--> Using cache 5555555555555555\n");
        p.feed("STEP 3/3: COPY x /x\n--> 6666666666666666\nCOMMIT t\n");
        assert_eq!(p.images, ["6666666666666666"]);
    }

    #[test]
    fn the_tail_keeps_the_last_lines_and_the_unfinished_one() {
        let mut p = Progress::default();
        for i in 0..40 {
            p.feed(&format!("line {i}\n"));
        }
        p.feed("half a li");
        let t = p.tail();
        assert_eq!(t.len(), TAIL + 1);
        assert_eq!(t.first().map(String::as_str), Some("line 25"));
        assert_eq!(t.last().map(String::as_str), Some("half a li"));
    }
}
