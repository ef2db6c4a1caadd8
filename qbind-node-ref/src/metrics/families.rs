//! Metric families gathered at scrape time.
//!
//! The components keep plain values (atomics in `qbind-net`, `qbind-store`
//! and `qbind-signer`, snapshots from `qbind-core`); nothing is counted
//! twice. At each scrape a [`Gathered`] collector reads them into
//! [`Family`] values — one per metric name, holding the samples of every
//! local validator — and writes them through `prometheus_client`'s
//! [`Collector`] interface, so each name gets one `# HELP`/`# TYPE` pair
//! however many validators a process runs.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The labels of one sample, in order (`validator` first where present).
pub type Labels = Vec<(&'static str, String)>;

/// The value of one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// A whole number.
    Int(u64),
    /// A fraction (durations in seconds).
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

/// Counter or gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic; its exposed name ends in `_total`.
    Counter,
    /// Any value.
    Gauge,
}

/// One metric family: its exposed name, help, kind and samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// The exposed name; a counter's ends in `_total` (`prometheus_client`
    /// appends that suffix itself, so it is registered without it).
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The samples.
    pub samples: Vec<(Labels, Value)>,
}

impl Family {
    /// An empty counter family; `name` must end in `_total`.
    #[must_use]
    pub fn counter(name: &'static str, help: &'static str) -> Self {
        debug_assert!(name.ends_with("_total"), "counter {name}");
        Family {
            name,
            help,
            kind: Kind::Counter,
            samples: Vec::new(),
        }
    }

    /// An empty gauge family.
    #[must_use]
    pub fn gauge(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            kind: Kind::Gauge,
            samples: Vec::new(),
        }
    }

    /// Add one sample.
    pub fn push(&mut self, labels: Labels, value: impl Into<Value>) {
        self.samples.push((labels, value.into()));
    }

    /// This family with one sample added.
    #[must_use]
    pub fn with(mut self, labels: Labels, value: impl Into<Value>) -> Self {
        self.push(labels, value);
        self
    }

    /// Write the family (nothing if it has no samples).
    ///
    /// # Errors
    /// The writer's.
    pub fn encode(&self, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
        if self.samples.is_empty() {
            return Ok(());
        }
        let (name, metric_type) = match self.kind {
            Kind::Counter => (
                self.name.strip_suffix("_total").unwrap_or(self.name),
                MetricType::Counter,
            ),
            Kind::Gauge => (self.name, MetricType::Gauge),
        };
        let mut metric = encoder.encode_descriptor(name, self.help, None, metric_type)?;
        for (labels, value) in &self.samples {
            let sample = metric.encode_family(labels)?;
            match (self.kind, *value) {
                (Kind::Counter, Value::Int(v)) => ConstCounter::new(v).encode(sample)?,
                (Kind::Counter, Value::Float(v)) => ConstCounter::new(v).encode(sample)?,
                (Kind::Gauge, Value::Int(v)) => ConstGauge::new(v).encode(sample)?,
                (Kind::Gauge, Value::Float(v)) => ConstGauge::new(v).encode(sample)?,
            }
        }
        Ok(())
    }
}

/// Labels `base` followed by `extra`.
#[must_use]
pub fn labels_with(base: &Labels, extra: (&'static str, &str)) -> Labels {
    let mut out = base.clone();
    out.push((extra.0, extra.1.to_string()));
    out
}

/// The one label `validator="id"`.
#[must_use]
pub fn validator(id: impl fmt::Display) -> Labels {
    vec![("validator", id.to_string())]
}

/// A [`Collector`] that gathers its families at each scrape by calling its
/// function.
pub struct Gathered<F>(pub F);

impl<F> fmt::Debug for Gathered<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gathered").finish_non_exhaustive()
    }
}

impl<F> Collector for Gathered<F>
where
    F: Fn() -> Vec<Family> + Send + Sync + 'static,
{
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        for family in (self.0)() {
            family.encode(&mut encoder)?;
        }
        Ok(())
    }
}

/// A registry holding one [`Gathered`] collector: the page of a process.
#[must_use]
pub fn registry<F>(gather: F) -> prometheus_client::registry::Registry
where
    F: Fn() -> Vec<Family> + Send + Sync + 'static,
{
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(Gathered(gather)));
    registry
}

/// Metric names that `page` declares more than once, or whose samples do
/// not all follow their own `# TYPE` line without another family in
/// between. A valid text page has none: each family is one block.
#[must_use]
pub fn duplicate_families(page: &str) -> Vec<String> {
    let mut declared = std::collections::BTreeSet::new();
    let mut current: Option<&str> = None;
    let mut bad = std::collections::BTreeSet::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            if !declared.insert(name) {
                bad.insert(name.to_string());
            }
            current = Some(name);
        } else if !line.is_empty() && !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let name = &line[..end];
            if current != Some(name) {
                bad.insert(name.to_string());
            }
        }
    }
    bad.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(families: Vec<Family>) -> String {
        crate::metrics::render(&registry(move || families.clone()))
    }

    #[test]
    fn counters_keep_their_total_name_and_labels_are_escaped() {
        let text = page(vec![
            Family::gauge("qbind_x", "An x.").with(Labels::new(), 3u64),
            Family::counter("qbind_y_total", "Ys.")
                .with(vec![("reason", "a\"b".into())], 2u64)
                .with(vec![("reason", "c".into())], 5u64),
            Family::counter("qbind_z_seconds_total", "Zs.").with(validator(1), 1.5),
            Family::gauge("qbind_empty", "Nothing."),
        ]);
        assert_eq!(
            text,
            "# HELP qbind_x An x.\n# TYPE qbind_x gauge\nqbind_x 3\n\
             # HELP qbind_y_total Ys.\n# TYPE qbind_y_total counter\n\
             qbind_y_total{reason=\"a\\\"b\"} 2\nqbind_y_total{reason=\"c\"} 5\n\
             # HELP qbind_z_seconds_total Zs.\n# TYPE qbind_z_seconds_total counter\n\
             qbind_z_seconds_total{validator=\"1\"} 1.5\n"
        );
        assert!(duplicate_families(&text).is_empty());
    }

    #[test]
    fn duplicates_and_split_families_are_found() {
        let twice = "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n# TYPE a gauge\na{v=\"1\"} 1\n";
        assert_eq!(duplicate_families(twice), vec!["a".to_string()]);
        // What the hand-written renderer produced with two local
        // validators: one `# TYPE` line, but validator 1's samples after
        // another family.
        let split = "# HELP a A.\n# TYPE a gauge\na{validator=\"0\"} 1\n# TYPE b gauge\n\
                     b{validator=\"0\"} 1\na{validator=\"1\"} 1\nb{validator=\"1\"} 1\n";
        assert_eq!(duplicate_families(split), vec!["a".to_string()]);
        assert!(duplicate_families("# TYPE a gauge\na 1\na{x=\"y\"} 2\n").is_empty());
    }
}
