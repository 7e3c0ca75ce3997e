//! The results: one row per figure, printed as a Markdown table and written
//! as JSON.

use serde::Serialize;

use crate::measure::{Machine, Stat};

/// A measured quantity: its statistic and unit.
#[derive(Debug, Clone, Serialize)]
pub struct Quantity {
    /// Median and spread.
    #[serde(flatten)]
    pub stat: Stat,
    /// Unit: "s", "ms", "/s", "MB".
    pub unit: String,
}

impl Quantity {
    /// A quantity from repeated values.
    pub fn of(values: &[f64], unit: &str) -> Quantity {
        Quantity {
            stat: Stat::of(values),
            unit: unit.into(),
        }
    }

    fn fmt_one(&self, x: f64) -> String {
        if !x.is_finite() {
            return "n/a".into();
        }
        match self.unit.as_str() {
            "/s" => format!("{}/s", thousands(x)),
            "s" => format!("{x:.3} s"),
            "ms" => format!("{x:.1} ms"),
            "MB" => format!("{x:.1} MB"),
            u => format!("{x:.3} {u}"),
        }
    }

    /// "median (min–max)".
    pub fn show(&self) -> String {
        if self.stat.n <= 1 {
            return self.fmt_one(self.stat.median);
        }
        format!(
            "{} ({}–{})",
            self.fmt_one(self.stat.median),
            self.fmt_one(self.stat.min)
                .trim_end_matches(&*self.unit_suffix()),
            self.fmt_one(self.stat.max)
        )
    }

    fn unit_suffix(&self) -> String {
        match self.unit.as_str() {
            "/s" => "/s".into(),
            u => format!(" {u}"),
        }
    }
}

fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// One figure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Short stable name (for --only and the JSON).
    pub name: String,
    /// What is measured.
    pub figure: String,
    /// Custodia's value.
    pub custodia: Quantity,
    /// What the reference is.
    pub reference_label: String,
    /// The reference measured in the same run (None when there is none).
    pub reference: Option<Quantity>,
    /// Custodia / reference, per repetition.
    pub ratio: Option<Stat>,
    /// The target, in words.
    pub target: String,
    /// Whether the target is met (None: no target, or informational).
    pub met: Option<bool>,
    /// Sizes, substitutions, caveats.
    pub notes: Vec<String>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "full" or "quick".
    pub mode: String,
    /// Repetitions per measurement.
    pub repetitions: usize,
    /// The machine.
    pub machine: Machine,
    /// The figures.
    pub rows: Vec<Row>,
    /// Figures that failed to run, with the reason.
    pub failed: Vec<(String, String)>,
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

impl Report {
    /// The results as a Markdown table with numbered notes.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str("| figure | Custodia | reference | ratio | target | met? |\n");
        out.push_str("| --- | --- | --- | --- | --- | --- |\n");
        let mut notes = Vec::new();
        for r in &self.rows {
            let mut figure = r.figure.clone();
            for n in &r.notes {
                notes.push(n.clone());
                figure.push_str(&format!(" [{}]", notes.len()));
            }
            let reference = match &r.reference {
                Some(q) => format!("{}: {}", r.reference_label, q.show()),
                None => r.reference_label.clone(),
            };
            let ratio = r.ratio.map_or_else(
                || "—".to_string(),
                |s| {
                    if s.n <= 1 {
                        format!("{:.3}", s.median)
                    } else {
                        format!("{:.3} ({:.3}–{:.3})", s.median, s.min, s.max)
                    }
                },
            );
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                cell(&figure),
                cell(&r.custodia.show()),
                cell(&reference),
                cell(&ratio),
                cell(&r.target),
                met
            ));
        }
        if !notes.is_empty() {
            out.push('\n');
            for (i, n) in notes.iter().enumerate() {
                out.push_str(&format!("[{}] {}\n", i + 1, n));
            }
        }
        for (name, why) in &self.failed {
            out.push_str(&format!("\nFigure {name} could not be measured: {why}\n"));
        }
        out
    }

    /// The machine's description, as Markdown lines.
    pub fn machine_lines(&self) -> String {
        let m = &self.machine;
        format!(
            "- date: {}\n- cores (nproc): {}\n- CPU: {} (flags: {})\n- memory: {}\n- kernel: {}\n- rustc: {}\n- commit: {}\n- mode: {}, {} repetition(s) per measurement (median shown, spread in parentheses)\n",
            m.date,
            m.nproc,
            m.cpu,
            m.cpu_flags.join(", "),
            m.memory,
            m.kernel,
            m.rustc,
            m.commit,
            self.mode,
            self.repetitions
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_print_with_spread() {
        let q = Quantity::of(&[10_000.0, 12_345.4, 11_000.0], "/s");
        assert_eq!(q.show(), "11,000/s (10,000–12,345/s)");
        let q = Quantity::of(&[1.5], "s");
        assert_eq!(q.show(), "1.500 s");
        let q = Quantity::of(&[1.0, 3.0, 2.0], "MB");
        assert_eq!(q.show(), "2.0 MB (1.0–3.0 MB)");
    }
}
