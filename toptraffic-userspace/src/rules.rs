//! Compiled rules: which lines a rule takes, under which group key, and the
//! value it adds.
//!
//! [`RuleSet::apply`] is the userspace hot path's per-line step: one walk of
//! the line's tags per matching rule, the key built into a reused buffer, no
//! allocation.

use crate::config::{Aggregate, Rule, MAX_RULE_TAGS};
use crate::key;
use crate::lineproto::{Escaped, FieldValue, Line};
use crate::sketch::Shape;
use crate::stats::DropReason;

/// A name as bytes, for comparing with what the parser hands out.
type Name = Box<[u8]>;

/// A rule reduced to byte strings for matching.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub name: String,
    pub as_name: String,
    pub group_by: Vec<String>,
    pub max_keys: usize,
    /// The shape of the overflow sketches; None: the rule refuses keys
    /// beyond max_keys.
    pub sketch: Option<Shape>,
    max_key_bytes: usize,
    measurement: Name,
    filters: Vec<(Name, Name)>,
    group_tags: Vec<Name>,
    sum_field: Option<Name>,
}

impl CompiledRule {
    fn new(r: &Rule) -> CompiledRule {
        CompiledRule {
            name: r.name.clone(),
            as_name: r.as_name.clone(),
            group_by: r.group_by.clone(),
            max_keys: r.max_keys,
            sketch: r
                .overflow
                .as_ref()
                .map(|o| Shape::for_bound(o.error, o.confidence)),
            max_key_bytes: r.max_key_bytes,
            measurement: r.measurement.as_bytes().into(),
            filters: r
                .filters
                .iter()
                .map(|(k, v)| (k.as_bytes().into(), v.as_bytes().into()))
                .collect(),
            group_tags: r.group_by.iter().map(|t| t.as_bytes().into()).collect(),
            sum_field: match &r.aggregate {
                Aggregate::Count => None,
                Aggregate::Sum { field } => Some(field.as_bytes().into()),
            },
        }
    }

    /// The tag names of the group key, in order.
    pub fn group_by(&self) -> &[String] {
        &self.group_by
    }
}

/// All rules, indexed by measurement.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<CompiledRule>,
    /// Distinct measurements and the rules that take each.
    by_measurement: Vec<(Name, Vec<usize>)>,
}

/// What became of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// At least one rule took it.
    Counted,
    /// No rule took it, for this reason.
    Dropped(DropReason),
}

impl RuleSet {
    /// Compiles validated rules. Validation caps group_by and filters at
    /// [`MAX_RULE_TAGS`].
    pub fn new(rules: &[Rule]) -> RuleSet {
        let rules: Vec<CompiledRule> = rules.iter().map(CompiledRule::new).collect();
        let mut by_measurement: Vec<(Name, Vec<usize>)> = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            match by_measurement.iter_mut().find(|(m, _)| *m == r.measurement) {
                Some((_, idx)) => idx.push(i),
                None => by_measurement.push((r.measurement.clone(), vec![i])),
            }
        }
        RuleSet {
            rules,
            by_measurement,
        }
    }

    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// An empty count table per rule, in rule order.
    pub fn new_tables(&self) -> Vec<crate::snapshot::CountTable> {
        self.rules
            .iter()
            .map(|r| crate::snapshot::CountTable::new(r.max_keys).with_sketch(r.sketch))
            .collect()
    }

    /// An empty snapshot of interval `index`, a table per rule.
    pub fn new_snapshot(&self, index: u64) -> crate::snapshot::IntervalSnapshot {
        crate::snapshot::IntervalSnapshot {
            index,
            rules: self.new_tables(),
            spare: Default::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Offers `line` to every rule. For each rule that takes it, `count` gets
    /// the rule index, the group key, the value to add and whether this rule
    /// is the line's owner if it holds the key (no rule before it, in config
    /// order, held the line: the owner is the rule that counts the line as a
    /// point), and returns whether the key was held (false: the rule's key
    /// table is full).
    #[inline]
    pub fn apply(
        &self,
        line: &Line<'_>,
        scratch: &mut Vec<u8>,
        mut count: impl FnMut(usize, &[u8], f64, bool) -> bool,
    ) -> Outcome {
        let Some((_, idx)) = self
            .by_measurement
            .iter()
            .find(|(m, _)| line.measurement.eq_bytes(m))
        else {
            return Outcome::Dropped(DropReason::UnknownMeasurement);
        };
        // The most telling reason when no rule takes the line.
        let mut reason = DropReason::Filtered;
        let mut counted = false;
        for &ri in idx {
            let rule = &self.rules[ri];
            match rule.take(line, scratch) {
                Ok(value) => {
                    if count(ri, scratch, value, !counted) {
                        counted = true;
                    } else {
                        reason = reason.max_severity(DropReason::KeyTableFull);
                    }
                }
                Err(r) => reason = reason.max_severity(r),
            }
        }
        if counted {
            Outcome::Counted
        } else {
            Outcome::Dropped(reason)
        }
    }
}

impl CompiledRule {
    /// Whether this rule takes the line (of its measurement): on success the
    /// group key is in `scratch` and the value is returned.
    #[inline]
    fn take(&self, line: &Line<'_>, scratch: &mut Vec<u8>) -> Result<f64, DropReason> {
        let mut group: [Option<Escaped<'_>>; MAX_RULE_TAGS] = [None; MAX_RULE_TAGS];
        // None until the filter's tag is seen; the first occurrence decides.
        let mut filter_ok: [Option<bool>; MAX_RULE_TAGS] = [None; MAX_RULE_TAGS];
        for (k, v) in line.tags() {
            for (j, name) in self.group_tags.iter().enumerate() {
                // A key appears once: a line repeating one is invalid.
                if group[j].is_none() && k.eq_bytes(name) {
                    group[j] = Some(v);
                }
            }
            for (j, (name, want)) in self.filters.iter().enumerate() {
                if filter_ok[j].is_none() && k.eq_bytes(name) {
                    filter_ok[j] = Some(v.eq_bytes(want));
                }
            }
        }
        if !filter_ok[..self.filters.len()]
            .iter()
            .all(|&ok| ok == Some(true))
        {
            return Err(DropReason::Filtered);
        }
        let value = match &self.sum_field {
            None => 1.0,
            Some(field) => match line.field(field) {
                None => return Err(DropReason::MissingField),
                Some(v @ (FieldValue::String(_) | FieldValue::Boolean(_))) => {
                    debug_assert!(v.as_f64().is_none());
                    return Err(DropReason::FieldType);
                }
                Some(v) => v.as_f64().unwrap_or(0.0),
            },
        };
        scratch.clear();
        for v in &group[..self.group_tags.len()] {
            match v {
                Some(v) if v.is_plain() => key::push_value(scratch, v.raw()),
                Some(v) => key::push_value_iter(scratch, v.bytes()),
                // A missing tag groups under an empty value, as in Kapacitor.
                None => key::push_value(scratch, b""),
            }
        }
        // One comparison for the usual key: a long one is counted under its
        // bounded form, so that no value costs more than the rule allows.
        if scratch.len() > self.max_key_bytes {
            key::bound(scratch, self.max_key_bytes);
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::lineproto::Lines;

    fn rules(extra: &str) -> RuleSet {
        let text = format!(
            "[[rule]]\nname = \"c\"\nmeasurement = \"combined\"\ngroup_by = [\"ip\", \"id\"]\nfield = \"count\"\n{extra}"
        );
        RuleSet::new(&Config::parse(&text, "t").unwrap().rules)
    }

    fn run(set: &RuleSet, line: &str) -> (Outcome, Vec<(usize, Vec<String>, f64)>) {
        let l = Lines::new(line.as_bytes()).next().unwrap().unwrap();
        let mut got = Vec::new();
        let mut scratch = Vec::new();
        let o = set.apply(&l, &mut scratch, |r, k, v, _| {
            got.push((r, key::to_strings(k), v));
            true
        });
        (o, got)
    }

    #[test]
    fn the_first_rule_that_holds_a_line_owns_it() {
        let set = rules(
            "[[rule]]\nname = \"d\"\nmeasurement = \"combined\"\ngroup_by = [\"id\"]\n\
             [[rule]]\nname = \"e\"\nmeasurement = \"combined\"\ngroup_by = [\"ip\"]\n",
        );
        let l = Lines::new(b"combined,ip=1,id=2 count=1")
            .next()
            .unwrap()
            .unwrap();
        // Rule 0 is full: rule 1 holds the line first and owns it.
        let mut owners = Vec::new();
        let o = set.apply(&l, &mut Vec::new(), |r, _, _, owner| {
            owners.push((r, owner));
            r != 0
        });
        assert_eq!(o, Outcome::Counted);
        assert_eq!(owners, [(0, true), (1, true), (2, false)]);
    }

    #[test]
    fn groups_by_tag_values_in_group_by_order() {
        let set = rules("");
        let (o, got) = run(&set, "combined,uri=/p,id=42,ip=10.0.0.1,role=r count=3");
        assert_eq!(o, Outcome::Counted);
        assert_eq!(got, [(0, vec!["10.0.0.1".into(), "42".into()], 3.0)]);
    }

    #[test]
    fn missing_group_tag_is_an_empty_value() {
        let (_, got) = run(&rules(""), "combined,id=42 count=1i");
        assert_eq!(got, [(0, vec!["".into(), "42".into()], 1.0)]);
    }

    #[test]
    fn escaped_values_are_unescaped_into_the_key() {
        let (_, got) = run(&rules(""), r"combined,ip=a\ b,id=4\,2 count=1i");
        assert_eq!(got, [(0, vec!["a b".into(), "4,2".into()], 1.0)]);
    }

    #[test]
    fn drop_reasons() {
        let set = rules("where = { role = \"edge\" }\n");
        assert_eq!(
            run(&set, "other,ip=1 count=1").0,
            Outcome::Dropped(DropReason::UnknownMeasurement)
        );
        assert_eq!(
            run(&set, "combined,ip=1,role=core count=1").0,
            Outcome::Dropped(DropReason::Filtered)
        );
        assert_eq!(
            run(&set, "combined,ip=1 count=1").0,
            Outcome::Dropped(DropReason::Filtered)
        );
        assert_eq!(
            run(&set, "combined,ip=1,role=edge other=1").0,
            Outcome::Dropped(DropReason::MissingField)
        );
        assert_eq!(
            run(&set, "combined,ip=1,role=edge count=\"1\"").0,
            Outcome::Dropped(DropReason::FieldType)
        );
        assert_eq!(
            run(&set, "combined,ip=1,role=edge count=1").0,
            Outcome::Counted
        );
    }

    #[test]
    fn a_line_feeds_every_rule_of_its_measurement() {
        let set =
            rules("[[rule]]\nname = \"n\"\nmeasurement = \"combined\"\ngroup_by = [\"id\"]\n");
        let (o, got) = run(&set, "combined,ip=1,id=2 count=5");
        assert_eq!(o, Outcome::Counted);
        assert_eq!(
            got,
            [
                (0, vec!["1".into(), "2".into()], 5.0),
                (1, vec!["2".into()], 1.0)
            ]
        );
    }

    #[test]
    fn a_long_key_is_counted_under_its_bounded_form() {
        let set = rules("max_key_bytes = 64\n");
        let long =
            |tail: &str| format!("combined,ip=10.0.0.1,id={}{tail} count=1", "s".repeat(4000));
        let (o, a) = run(&set, &long("a"));
        assert_eq!(o, Outcome::Counted);
        let (_, b) = run(&set, &long("b"));
        let (_, a2) = run(&set, &long("a"));
        assert_eq!(a, a2);
        assert_ne!(a, b);
        let id = &a[0].1[1];
        assert!(id.starts_with("sss") && id.contains('\u{2026}'), "{id}");
        assert_eq!(a[0].1[0], "10.0.0.1");
        assert_eq!(4 + 8 + id.len(), 64);
        // At the limit: whole.
        let at = format!("combined,ip=10.0.0.1,id={} count=1", "s".repeat(64 - 12));
        let (_, c) = run(&set, &at);
        assert_eq!(c[0].1[1], "s".repeat(52));
    }

    #[test]
    fn full_key_table_is_its_own_reason() {
        let set = rules("");
        let l = Lines::new(b"combined,ip=1 count=1")
            .next()
            .unwrap()
            .unwrap();
        let o = set.apply(&l, &mut Vec::new(), |_, _, _, _| false);
        assert_eq!(o, Outcome::Dropped(DropReason::KeyTableFull));
    }
}
