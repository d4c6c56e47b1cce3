//! Medians, nearest-rank percentiles, and the report: a table for people and one JSON
//! document in which every figure says what it measured, its unit and its sample count.
//! The row helpers at the end are shared by the phases so that their tables keep one set of
//! columns.

use std::time::Duration;

use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Default)]
pub(crate) struct Samples(pub(crate) Vec<f64>);

impl Samples {
    pub(crate) fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1000.0);
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    pub(crate) fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// Nearest rank, so the figure is always one that was observed; with 20 samples p95 is
    /// the second largest.
    pub(crate) fn pct(&self, p: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    pub(crate) fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    AtMost,
    AtLeast,
    Below,
    Exactly,
}

impl Op {
    fn holds(self, v: f64, t: f64) -> bool {
        match self {
            Op::AtMost => v <= t,
            Op::AtLeast => v >= t,
            Op::Below => v < t,
            Op::Exactly => v == t,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::AtMost => "<=",
            Op::AtLeast => ">=",
            Op::Below => "<",
            Op::Exactly => "==",
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Report {
    lines: Vec<String>,
    figures: Vec<Value>,
    series: Map<String, Value>,
    pub(crate) notes: Vec<String>,
    pub(crate) unmeasured: usize,
}

impl Report {
    pub(crate) fn section(&mut self, title: &str) {
        if !self.lines.is_empty() {
            self.lines.push(String::new());
        }
        self.lines.push(format!("== {title}"));
    }

    pub(crate) fn line(&mut self, s: impl Into<String>) {
        self.lines.push(s.into());
    }

    /// Keeps every sample (in ms) so that a figure can be recomputed or plotted later.
    pub(crate) fn series(&mut self, id: &str, s: &Samples) {
        self.series.insert(id.to_string(), json!(s.0));
    }

    /// Records a figure; with a target, returns whether it was met, as words for the table.
    pub(crate) fn figure(
        &mut self,
        id: &str,
        what: &str,
        unit: &str,
        samples: usize,
        value: f64,
        target: Option<(Op, f64)>,
    ) -> String {
        let mut f = json!({ "id": id, "what": what, "unit": unit, "samples": samples, "value": finite(value) });
        let verdict = match target {
            Some((op, t)) => {
                let met = value.is_finite() && op.holds(value, t);
                f["target"] = json!({ "op": op.symbol(), "value": t });
                f["target_met"] = json!(met);
                format!("target {} {}: {}", op.symbol(), trim(t), if met { "met" } else { "NOT met" })
            }
            None => String::new(),
        };
        self.figures.push(f);
        verdict
    }

    pub(crate) fn table(&self) -> String {
        let mut s = self.lines.join("\n");
        if !self.notes.is_empty() {
            s.push_str("\n\n== notes\n");
            for n in &self.notes {
                s.push_str(&format!("- {n}\n"));
            }
        }
        s
    }

    pub(crate) fn json(&self, meta: &Value) -> Value {
        json!({ "meta": meta, "figures": self.figures, "samples_ms": self.series, "notes": self.notes })
    }
}

fn finite(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

pub(crate) fn ms(v: f64) -> String {
    format!("{v:9.1}")
}

/// The median of per-round harness/raw ratios: each pair ran back to back, so what the
/// daemon was doing at the time cancels out better than in a ratio of medians.
pub(crate) fn paired_row(r: &mut Report, id: &str, what: &str, h: &Samples, raw: &Samples) {
    let ratios = Samples(h.0.iter().zip(&raw.0).map(|(a, b)| a / b).collect());
    let m = ratios.median();
    r.figure(id, what, "ratio", ratios.len(), m, None);
    r.line(format!("{:<36}{:>9.3}", format!("  paired {id}"), m));
}

pub(crate) fn ratio_row(
    r: &mut Report,
    id: &str,
    what: &str,
    h: &Samples,
    raw: &Samples,
    target: Option<(Op, f64)>,
) -> f64 {
    let ratio = h.median() / raw.median();
    let verdict = r.figure(id, what, "ratio", h.len().min(raw.len()), ratio, target);
    r.line(format!("{:<36}{:>9.3}   {verdict}", format!("  ratio {id}"), ratio).trim_end().to_string());
    ratio
}

pub(crate) fn dist_rows(r: &mut Report, id: &str, label: &str, what: &str, s: &Samples) {
    r.series(id, s);
    r.figure(&format!("{id}.median"), &format!("{what}: median"), "ms", s.len(), s.median(), None);
    r.figure(&format!("{id}.p95"), &format!("{what}: 95th percentile"), "ms", s.len(), s.pct(95.0), None);
    r.line(format!("{label:<36}{}{}{:>7}", ms(s.median()), ms(s.pct(95.0)), s.len()));
}
