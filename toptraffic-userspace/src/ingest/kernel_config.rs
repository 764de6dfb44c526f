//! The rules as the kernel programs see them: which rules the kernel can
//! evaluate, and the `KernelConfig` map value that tells it how.
//!
//! A rule the kernel cannot express (too many group tags or filters, a name
//! longer than it compares, more rules than it holds) runs in userspace: its
//! measurement is marked so that the kernel hands every datagram with such a
//! line to userspace whole.

use toptraffic_common::{
    KernelConfig, Name, RuleSpec, MAX_FIELDS, MAX_FILTERS, MAX_GROUP, MAX_MEASUREMENTS, MAX_NAMES,
    MAX_RULES, NAME_LEN, RULE_ENABLED, RULE_SUM,
};

/// Where each rule runs, and the config map value.
#[derive(Debug, Clone)]
pub struct KernelPlan {
    pub config: KernelConfig,
    /// Per rule (config order): the id its kernel counts carry.
    pub ids: Vec<u32>,
    /// Per rule (config order): None when the kernel evaluates it, else why
    /// it runs in userspace.
    pub userspace_only: Vec<Option<String>>,
}

impl KernelPlan {
    /// Rules the kernel evaluates.
    pub fn kernel_rules(&self) -> usize {
        self.userspace_only.iter().filter(|r| r.is_none()).count()
    }
}

/// Index of `name` in `table[..*n]`, adding it when there is room.
fn intern<const N: usize>(table: &mut [Name; N], n: &mut u32, name: &[u8]) -> Option<u32> {
    let want = Name::new(name);
    if let Some(i) = table[..*n as usize].iter().position(|t| *t == want) {
        return Some(i as u32);
    }
    if *n as usize >= N {
        return None;
    }
    table[*n as usize] = want;
    *n += 1;
    Some(*n - 1)
}

/// Why the kernel cannot evaluate this rule as it stands, if it cannot.
fn inexpressible(index: usize, r: &crate::config::Rule) -> Option<String> {
    let long = |what: &str, s: &str| {
        (s.len() > NAME_LEN).then(|| format!("{what} {s:?} is longer than {NAME_LEN} bytes"))
    };
    if index >= MAX_RULES {
        return Some(format!(
            "the kernel evaluates the first {MAX_RULES} rules only"
        ));
    }
    if r.group_by.len() > MAX_GROUP {
        return Some(format!("more than {MAX_GROUP} group_by tags"));
    }
    if r.filters.len() > MAX_FILTERS {
        return Some(format!("more than {MAX_FILTERS} where filters"));
    }
    if let Some(e) = long("measurement", &r.measurement) {
        return Some(e);
    }
    for t in &r.group_by {
        if let Some(e) = long("tag", t) {
            return Some(e);
        }
    }
    for (k, v) in &r.filters {
        if let Some(e) = long("tag", k).or_else(|| long("filter value", v)) {
            return Some(e);
        }
    }
    if let crate::config::Aggregate::Sum { field } = &r.aggregate {
        if let Some(e) = long("field", field) {
            return Some(e);
        }
    }
    None
}

/// Plans the kernel's share of `rules`; Err when the kernel path cannot run
/// at all without miscounting (its measurement table cannot hold even the
/// measurements it must hand to userspace).
pub fn plan(config_rules: &[crate::config::Rule]) -> Result<KernelPlan, String> {
    let ids: Vec<u32> = (0..config_rules.len() as u32).collect();
    plan_with_ids(config_rules, &ids)
}

/// As [`plan`], with the id each rule's counts carry in the kernel's keys
/// (see `RuleSpec::id`).
pub fn plan_with_ids(
    config_rules: &[crate::config::Rule],
    ids: &[u32],
) -> Result<KernelPlan, String> {
    assert_eq!(ids.len(), config_rules.len());
    let mut c = KernelConfig::empty();
    // The daemon gives every config it writes a version of its own; a plan
    // run on the host (tests, benchmarks) has this one.
    c.version = 1;
    let mut userspace_only = Vec::with_capacity(config_rules.len());
    // Measurements first, so that every rule's measurement is known to the
    // kernel even if the rule itself runs in userspace.
    for r in config_rules {
        if intern(
            &mut c.measurements,
            &mut c.n_measurements,
            r.measurement.as_bytes(),
        )
        .is_none()
        {
            return Err(format!(
                "the rules name more than {MAX_MEASUREMENTS} measurements; the kernel path matches at most {MAX_MEASUREMENTS}"
            ));
        }
    }
    for (i, r) in config_rules.iter().enumerate() {
        let m = intern(
            &mut c.measurements,
            &mut c.n_measurements,
            r.measurement.as_bytes(),
        )
        .expect("interned above") as usize;
        let mut why = inexpressible(i, r);
        let mut spec = RuleSpec::empty();
        if why.is_none() {
            // Tables are shared by the rules: a rule that would overflow one
            // runs in userspace. Work on copies so a refused rule adds nothing.
            let (mut names, mut n_names) = (c.names, c.n_names);
            let (mut fields, mut n_fields) = (c.fields, c.n_fields);
            let mut ok = true;
            for (g, t) in r.group_by.iter().enumerate() {
                match intern(&mut names, &mut n_names, t.as_bytes()) {
                    Some(k) => spec.group[g] = k,
                    None => ok = false,
                }
            }
            for (f, (k, v)) in r.filters.iter().enumerate() {
                match intern(&mut names, &mut n_names, k.as_bytes()) {
                    Some(idx) => {
                        spec.filter_name[f] = idx;
                        spec.filter_value[f] = Name::new(v.as_bytes());
                    }
                    None => ok = false,
                }
            }
            if let crate::config::Aggregate::Sum { field } = &r.aggregate {
                match intern(&mut fields, &mut n_fields, field.as_bytes()) {
                    Some(k) => spec.field = k,
                    None => ok = false,
                }
                spec.flags |= RULE_SUM;
            }
            if ok {
                spec.flags |= RULE_ENABLED;
                spec.n_group = r.group_by.len() as u32;
                spec.n_filters = r.filters.len() as u32;
                c.names = names;
                c.n_names = n_names;
                c.fields = fields;
                c.n_fields = n_fields;
                spec.id = ids[i];
                c.rules[i] = spec;
                c.measurement_rules[m] |= 1 << i;
            } else {
                why = Some(format!(
                    "the kernel matches at most {MAX_NAMES} distinct tag names and {MAX_FIELDS} fields over all rules"
                ));
            }
        }
        if why.is_some() {
            c.measurement_userspace[m] = 1;
        }
        userspace_only.push(why);
    }
    c.n_rules = config_rules.len().min(MAX_RULES) as u32;
    Ok(KernelPlan {
        config: c,
        ids: ids.to_vec(),
        userspace_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn plan_for(text: &str) -> KernelPlan {
        let c = Config::parse(text, "t").unwrap();
        plan(&c.rules).unwrap()
    }

    #[test]
    fn the_default_rules_all_run_in_the_kernel() {
        let c = Config::embedded_default();
        let p = plan(&c.rules).unwrap();
        assert_eq!(p.kernel_rules(), 3);
        assert_eq!(p.config.n_measurements, 3);
        assert_eq!(p.config.n_names, 2, "ip and id are shared");
        assert_eq!(p.config.n_fields, 1);
        assert_eq!(p.config.measurement_rules[..3], [1, 2, 4]);
        assert_eq!(p.config.rules[0].group, [0, 1, 0, 0]);
        assert_eq!(p.config.rules[2].group[0], 1);
    }

    #[test]
    fn an_inexpressible_rule_sends_its_measurement_to_userspace() {
        let p = plan_for(
            "[[rule]]\nname = \"a\"\nmeasurement = \"m\"\ngroup_by = [\"a\", \"b\", \"c\", \"d\", \"e\"]\n\
             [[rule]]\nname = \"b\"\nmeasurement = \"n\"\ngroup_by = [\"a\"]\n",
        );
        assert!(p.userspace_only[0].as_deref().unwrap().contains("group_by"));
        assert!(p.userspace_only[1].is_none());
        assert_eq!(p.config.measurement_userspace[..2], [1, 0]);
        assert_eq!(p.config.rules[0].flags, 0);
        assert_eq!(p.config.n_names, 1, "the refused rule added no names");
    }

    #[test]
    fn too_many_measurements_refuse_the_kernel_path() {
        let mut text = String::new();
        for i in 0..=MAX_MEASUREMENTS {
            text.push_str(&format!(
                "[[rule]]\nname = \"r{i}\"\nmeasurement = \"m{i}\"\ngroup_by = [\"a\"]\n"
            ));
        }
        let c = Config::parse(&text, "t").unwrap();
        assert!(plan(&c.rules).is_err());
    }
}
