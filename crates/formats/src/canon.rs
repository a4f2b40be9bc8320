//! Canonical bytes: RFC 8785 (JCS) JSON behind a domain tag.
//!
//! Every signed or hashed object is hashed as `tag || JCS(object)`. The tag
//! names the object and its version so bytes signed for one purpose can never
//! be replayed as another.

use serde::Serialize;
use serde_json::Value;

/// Domain tag in front of a transaction header's JCS bytes.
pub const TX_TAG: &[u8] = b"medledger/tx/v1\n";
/// Domain tag in front of a block header's JCS bytes.
pub const BLOCK_TAG: &[u8] = b"medledger/block/v1\n";
/// Largest integer that every JCS implementation renders exactly (2^53 - 1).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
/// Deepest nesting accepted in a payload.
pub const MAX_DEPTH: usize = 32;

/// Why a value has no canonical form.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum CanonError {
    /// A payload must be a JSON object.
    #[error("payload must be a JSON object")]
    NotAnObject,
    /// An integer outside ±(2^53−1) would change value under JCS.
    #[error("number at {0} is outside the exactly representable range ±(2^53-1)")]
    UnsafeNumber(String),
    /// The value nests deeper than [`MAX_DEPTH`].
    #[error("payload nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The serializer refused the value.
    #[error("cannot canonicalize: {0}")]
    Serialize(String),
}

/// JCS bytes of any serializable value.
pub fn jcs<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonError> {
    serde_jcs::to_vec(value).map_err(|e| CanonError::Serialize(e.to_string()))
}

/// `tag || JCS(value)`.
pub fn tagged<T: Serialize + ?Sized>(tag: &[u8], value: &T) -> Result<Vec<u8>, CanonError> {
    let body = jcs(value)?;
    let mut out = Vec::with_capacity(tag.len() + body.len());
    out.extend_from_slice(tag);
    out.extend_from_slice(&body);
    Ok(out)
}

/// `tag || JCS(value)` for the fixed header structs, without the generic
/// JCS serializer. Valid only for structs whose fields are declared in JCS
/// (sorted) order and hold integers and strings that need no escaping (hex,
/// and kinds restricted to `[a-z0-9_.]`): for those serde_json writes exactly
/// the JCS bytes. Tests pin that equivalence for each header type.
pub fn tagged_header<T: Serialize>(tag: &[u8], value: &T) -> Result<Vec<u8>, CanonError> {
    let mut out = Vec::with_capacity(tag.len() + 320);
    out.extend_from_slice(tag);
    serde_json::to_writer(&mut out, value).map_err(|e| CanonError::Serialize(e.to_string()))?;
    Ok(out)
}

/// Canonical bytes of a transaction payload.
///
/// Refuses what another language's JCS could render differently: integers
/// beyond 2^53 (JCS prints numbers as IEEE doubles) and absurd nesting.
pub fn canonical_payload(payload: &Value) -> Result<Vec<u8>, CanonError> {
    if !payload.is_object() {
        return Err(CanonError::NotAnObject);
    }
    check_value(payload, &mut String::from("$"), 0)?;
    jcs(payload)
}

fn check_value(v: &Value, path: &mut String, depth: usize) -> Result<(), CanonError> {
    if depth > MAX_DEPTH {
        return Err(CanonError::TooDeep);
    }
    match v {
        Value::Number(n) => {
            let safe = if let Some(u) = n.as_u64() {
                u <= MAX_SAFE_INTEGER
            } else if let Some(i) = n.as_i64() {
                i.unsigned_abs() <= MAX_SAFE_INTEGER
            } else {
                n.as_f64().is_some_and(f64::is_finite)
            };
            if !safe {
                return Err(CanonError::UnsafeNumber(path.clone()));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_value(item, path, depth + 1)?;
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                check_value(item, path, depth + 1)?;
                path.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jcs_sorts_keys_and_formats_numbers() {
        let v = json!({"b": 1, "a": [1.5, 1e21, 0.1, -0.0], "c": "é\u{1}"});
        assert_eq!(
            String::from_utf8(canonical_payload(&v).unwrap()).unwrap(),
            "{\"a\":[1.5,1e+21,0.1,0],\"b\":1,\"c\":\"é\\u0001\"}"
        );
    }

    #[test]
    fn unsafe_integers_and_non_objects_are_refused() {
        assert_eq!(
            canonical_payload(&json!({"x": {"y": 9007199254740992u64}})),
            Err(CanonError::UnsafeNumber("$.x.y".into()))
        );
        assert!(canonical_payload(&json!({"x": 9007199254740991u64})).is_ok());
        assert_eq!(canonical_payload(&json!([1])), Err(CanonError::NotAnObject));
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!({ "d": deep });
        }
        assert_eq!(canonical_payload(&deep), Err(CanonError::TooDeep));
    }
}
