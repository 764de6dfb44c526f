//! A value as the API writes numbers: integers without a fraction.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A float64 written as Go's encoding/json writes one that holds an
/// integer: without a fraction (`1234`, not `1234.0`); other finite values
/// as the shortest decimal that reads back the same, and NaN or infinity as
/// `null` (as serde_json writes them; read back as NaN).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Number(pub f64);

/// 2^53: below it every integer is exact in a float64, and as an i64.
const EXACT: f64 = 9_007_199_254_740_992.0;

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.fract() == 0.0 && v.abs() < EXACT {
            s.serialize_i64(v as i64)
        } else if v.is_finite() {
            s.serialize_f64(v)
        } else {
            s.serialize_none()
        }
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Number(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN)))
    }
}

/// As written in JSON.
impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl From<f64> for Number {
    fn from(v: f64) -> Number {
        Number(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: f64) -> String {
        serde_json::to_string(&Number(v)).unwrap()
    }

    #[test]
    fn integers_have_no_fraction() {
        assert_eq!(json(1234.0), "1234");
        assert_eq!(json(-7.0), "-7");
        assert_eq!(json(0.0), "0");
        assert_eq!(json(-0.0), "0");
        assert_eq!(json(9_007_199_254_740_991.0), "9007199254740991");
    }

    #[test]
    fn other_values_are_floats_or_null() {
        assert_eq!(json(12.5), "12.5");
        assert_eq!(json(0.1), "0.1");
        assert_eq!(json(9_007_199_254_740_992.0), "9007199254740992.0");
        assert_eq!(json(f64::NAN), "null");
        assert_eq!(json(f64::INFINITY), "null");
    }

    #[test]
    fn reads_back_what_it_writes() {
        for v in [1234.0, 12.5, -3.0, 1e300] {
            let back: Number = serde_json::from_str(&json(v)).unwrap();
            assert_eq!(back, Number(v));
        }
        let nan: Number = serde_json::from_str("null").unwrap();
        assert!(nan.0.is_nan());
    }

    #[test]
    fn displays_as_json() {
        assert_eq!(Number(1234.0).to_string(), "1234");
        assert_eq!(Number(2.25).to_string(), "2.25");
    }

    /// The same text as the daemon's numbers have always had: an integral
    /// float64 as an i64 Value, any other through serde_json's float.
    #[test]
    fn matches_a_value_built_from_an_integer_or_a_float() {
        for v in [0.0f64, 1.0, 60.0, 4.5, 1e21, -2.75, 123456789.0] {
            let value = if v.fract() == 0.0 && v.abs() < EXACT {
                serde_json::Value::from(v as i64)
            } else {
                serde_json::Value::from(v)
            };
            assert_eq!(json(v), value.to_string(), "{v}");
        }
    }
}
