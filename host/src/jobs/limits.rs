//! Sandbox limits: the defaults, per-plugin and per-job overrides, and the
//! server's caps that no override may exceed.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The limits one job runs under. Every field is enforced by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Fuel units (roughly wasm instructions) the job may burn.
    pub fuel: u64,
    /// Wall-clock time from instantiation to the end of `run`.
    #[serde(with = "millis")]
    pub wall_time: Duration,
    /// Linear memory, summed over every memory of the component, in bytes.
    pub memory_bytes: u64,
    /// Elements in any one table.
    pub table_elements: u64,
    /// Log lines kept per attempt (guest `log` calls plus stdout/stderr lines).
    pub log_lines: u32,
    /// Log bytes kept per attempt.
    pub log_bytes: u64,
    /// Size of the JSON args, and of the JSON result, in bytes.
    pub payload_bytes: u64,
    /// Time a cancelled job gets to notice `is-cancelled` before a hard stop.
    #[serde(with = "millis")]
    pub cancel_grace: Duration,
}

impl Default for Limits {
    /// The defaults of DESIGN.md: generous for real work, small enough that
    /// a thousand hostile jobs cannot exhaust the host.
    fn default() -> Self {
        Self {
            fuel: 10_000_000_000,
            wall_time: Duration::from_secs(60),
            memory_bytes: 64 << 20,
            table_elements: 10_000,
            log_lines: 10_000,
            log_bytes: 1 << 20,
            payload_bytes: 1 << 20,
            cancel_grace: Duration::from_secs(5),
        }
    }
}

/// A partial set of limits: what a plugin or a job asks to change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// See [`Limits::fuel`].
    pub fuel: Option<u64>,
    /// See [`Limits::wall_time`]; milliseconds.
    #[serde(default, with = "opt_millis")]
    #[schema(value_type = Option<u64>)]
    pub wall_time: Option<Duration>,
    /// See [`Limits::memory_bytes`].
    pub memory_bytes: Option<u64>,
    /// See [`Limits::table_elements`].
    pub table_elements: Option<u64>,
    /// See [`Limits::log_lines`].
    pub log_lines: Option<u32>,
    /// See [`Limits::log_bytes`].
    pub log_bytes: Option<u64>,
    /// See [`Limits::payload_bytes`].
    pub payload_bytes: Option<u64>,
    /// See [`Limits::cancel_grace`]; milliseconds.
    #[serde(default, with = "opt_millis")]
    #[schema(value_type = Option<u64>)]
    pub cancel_grace: Option<Duration>,
}

impl Limits {
    /// These limits with `overrides` applied, each field capped by `caps`.
    pub fn with(&self, overrides: &LimitOverrides, caps: &Limits) -> Limits {
        fn pick<T: Ord>(asked: Option<T>, default: T, cap: T) -> T {
            asked.unwrap_or(default).min(cap)
        }
        let o = overrides;
        Limits {
            fuel: pick(o.fuel, self.fuel, caps.fuel),
            wall_time: pick(o.wall_time, self.wall_time, caps.wall_time),
            memory_bytes: pick(o.memory_bytes, self.memory_bytes, caps.memory_bytes),
            table_elements: pick(o.table_elements, self.table_elements, caps.table_elements),
            log_lines: pick(o.log_lines, self.log_lines, caps.log_lines),
            log_bytes: pick(o.log_bytes, self.log_bytes, caps.log_bytes),
            payload_bytes: pick(o.payload_bytes, self.payload_bytes, caps.payload_bytes),
            cancel_grace: pick(o.cancel_grace, self.cancel_grace, caps.cancel_grace),
        }
    }
}

impl Limits {
    /// The first limit `overrides` asks for above these caps, named as in
    /// JSON, with what was asked and the cap; `None` when all fit.
    pub fn refusal(&self, overrides: &LimitOverrides) -> Option<String> {
        fn over<T: Ord + std::fmt::Debug>(name: &str, asked: Option<T>, cap: T) -> Option<String> {
            asked
                .filter(|a| *a > cap)
                .map(|a| format!("limits.{name}: {a:?} is over the cap of {cap:?}"))
        }
        let o = overrides;
        over("fuel", o.fuel, self.fuel)
            .or_else(|| over("wall_time", o.wall_time, self.wall_time))
            .or_else(|| over("memory_bytes", o.memory_bytes, self.memory_bytes))
            .or_else(|| over("table_elements", o.table_elements, self.table_elements))
            .or_else(|| over("log_lines", o.log_lines, self.log_lines))
            .or_else(|| over("log_bytes", o.log_bytes, self.log_bytes))
            .or_else(|| over("payload_bytes", o.payload_bytes, self.payload_bytes))
            .or_else(|| over("cancel_grace", o.cancel_grace, self.cancel_grace))
    }
}

impl LimitOverrides {
    /// These overrides with a tenant's `caps` filled in wherever nothing was
    /// asked and the cap is below `defaults`, so a job of the tenant never
    /// runs above its caps, whatever the defaults become.
    pub fn capped(&self, caps: &LimitOverrides, defaults: &Limits) -> LimitOverrides {
        fn fill<T: Ord>(asked: Option<T>, cap: Option<T>, default: T) -> Option<T> {
            asked.or(cap.filter(|cap| *cap < default))
        }
        let (o, c, d) = (self, caps, defaults);
        LimitOverrides {
            fuel: fill(o.fuel, c.fuel, d.fuel),
            wall_time: fill(o.wall_time, c.wall_time, d.wall_time),
            memory_bytes: fill(o.memory_bytes, c.memory_bytes, d.memory_bytes),
            table_elements: fill(o.table_elements, c.table_elements, d.table_elements),
            log_lines: fill(o.log_lines, c.log_lines, d.log_lines),
            log_bytes: fill(o.log_bytes, c.log_bytes, d.log_bytes),
            payload_bytes: fill(o.payload_bytes, c.payload_bytes, d.payload_bytes),
            cancel_grace: fill(o.cancel_grace, c.cancel_grace, d.cancel_grace),
        }
    }
}

impl LimitOverrides {
    /// These overrides lowered to `caps` wherever they ask for more: a copy
    /// of an old job runs within the tenant's caps of today.
    pub fn lowered_to(&self, caps: &LimitOverrides) -> LimitOverrides {
        fn low<T: Ord>(asked: Option<T>, cap: Option<T>) -> Option<T> {
            match (asked, cap) {
                (Some(asked), Some(cap)) => Some(asked.min(cap)),
                (asked, _) => asked,
            }
        }
        let (o, c) = (self, caps);
        LimitOverrides {
            fuel: low(o.fuel, c.fuel),
            wall_time: low(o.wall_time, c.wall_time),
            memory_bytes: low(o.memory_bytes, c.memory_bytes),
            table_elements: low(o.table_elements, c.table_elements),
            log_lines: low(o.log_lines, c.log_lines),
            log_bytes: low(o.log_bytes, c.log_bytes),
            payload_bytes: low(o.payload_bytes, c.payload_bytes),
            cancel_grace: low(o.cancel_grace, c.cancel_grace),
        }
    }
}

/// Durations travel as whole milliseconds in JSON.
pub(crate) mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::millis::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_caps_win() {
        let caps = Limits { fuel: 1_000, ..Limits::default() };
        let asked = LimitOverrides {
            fuel: Some(5_000),
            wall_time: Some(Duration::from_millis(250)),
            ..LimitOverrides::default()
        };
        let limits = Limits::default().with(&asked, &caps);
        assert_eq!(limits.fuel, 1_000, "the cap bounds an override");
        assert_eq!(limits.wall_time, Duration::from_millis(250));
        assert_eq!(limits.memory_bytes, Limits::default().memory_bytes);
    }

    #[test]
    fn tenant_caps_fill_in_only_below_the_defaults() {
        let caps = LimitOverrides {
            fuel: Some(1_000),
            memory_bytes: Some(u64::MAX),
            ..LimitOverrides::default()
        };
        let asked = LimitOverrides { fuel: Some(10), ..LimitOverrides::default() };
        let capped = asked.capped(&caps, &Limits::default());
        assert_eq!(capped.fuel, Some(10), "what was asked stays");
        assert_eq!(capped.memory_bytes, None, "a cap above the default changes nothing");
        let capped = LimitOverrides::default().capped(&caps, &Limits::default());
        assert_eq!(capped.fuel, Some(1_000), "a cap below the default applies");
    }

    #[test]
    fn overrides_parse_from_json_and_reject_unknown_fields() {
        let parsed: LimitOverrides =
            serde_json::from_str(r#"{"fuel": 10, "wall_time": 1500}"#).unwrap();
        assert_eq!(parsed.fuel, Some(10));
        assert_eq!(parsed.wall_time, Some(Duration::from_millis(1500)));
        let err = serde_json::from_str::<LimitOverrides>(r#"{"fule": 10}"#).unwrap_err();
        assert!(err.to_string().contains("fule"), "{err}");
    }
}
