//! The policy input for a request: its protobuf JSON form, as documented in
//! docs/policy.md. Written against protobuf's reflection rather than with a
//! JSON printer because the standard printer turns 64-bit integers into
//! strings and camel-cases names; policies compare numbers and use the
//! `.proto` field names.
use base64::Engine as _;
use protobuf::reflect::{ReflectFieldRef, ReflectValueRef, RuntimeFieldType, RuntimeType};
use protobuf::MessageDyn;
use serde_json::{Map, Number, Value};

/// Every field, defaults included, under its `.proto` name. Enums are
/// their value names, `bytes` are base64 (standard alphabet, padded), unset
/// message fields are `null`.
pub fn message_to_json(m: &dyn MessageDyn) -> Value {
    let desc = m.descriptor_dyn();
    let mut obj = Map::new();
    for f in desc.fields() {
        let v = match f.get_reflect(m) {
            ReflectFieldRef::Optional(o) => match o.value() {
                Some(v) => value_to_json(v),
                None if matches!(
                    f.runtime_field_type(),
                    RuntimeFieldType::Singular(RuntimeType::Message(_))
                ) =>
                {
                    Value::Null
                }
                None => value_to_json(f.get_singular_field_or_default(m)),
            },
            ReflectFieldRef::Repeated(r) => {
                Value::Array(r.into_iter().map(value_to_json).collect())
            }
            ReflectFieldRef::Map(map) => {
                let mut o = Map::new();
                for (k, v) in &map {
                    let key = match value_to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    o.insert(key, value_to_json(v));
                }
                Value::Object(o)
            }
        };
        obj.insert(f.name().to_string(), v);
    }
    Value::Object(obj)
}

fn value_to_json(v: ReflectValueRef<'_>) -> Value {
    match v {
        ReflectValueRef::U32(n) => Value::from(n),
        ReflectValueRef::U64(n) => Value::from(n),
        ReflectValueRef::I32(n) => Value::from(n),
        ReflectValueRef::I64(n) => Value::from(n),
        ReflectValueRef::F32(n) => {
            Number::from_f64(f64::from(n)).map_or(Value::Null, Value::Number)
        }
        ReflectValueRef::F64(n) => Number::from_f64(n).map_or(Value::Null, Value::Number),
        ReflectValueRef::Bool(b) => Value::Bool(b),
        ReflectValueRef::String(s) => Value::String(s.to_string()),
        ReflectValueRef::Bytes(b) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        ReflectValueRef::Enum(d, n) => match d.value_by_number(n) {
            Some(e) => Value::String(e.name().to_string()),
            None => Value::from(n),
        },
        ReflectValueRef::Message(m) => message_to_json(&*m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_protocol::{
        ExecProcessRequest, HealthCheckResponse, Process, StatsContainerResponse, WriteStdinRequest,
    };
    use serde_json::json;

    #[test]
    fn fields_use_proto_names_and_defaults_are_present() {
        let r = ExecProcessRequest {
            container_id: "c1".into(),
            process: protobuf::MessageField::some(Process {
                args: vec!["sh".into()],
                uid: 1000,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            message_to_json(&r),
            json!({
                "container_id": "c1",
                "exec_id": "",
                "process": {"args": ["sh"], "env": [], "cwd": "", "terminal": false, "uid": 1000, "gid": 0}
            })
        );
    }

    #[test]
    fn unset_message_is_null_bytes_are_base64_u64_is_a_number_enums_are_names() {
        assert_eq!(
            message_to_json(&ExecProcessRequest::default())["process"],
            Value::Null
        );
        let w = WriteStdinRequest {
            data: b"hi\n".to_vec(),
            ..Default::default()
        };
        assert_eq!(message_to_json(&w)["data"], json!("aGkK"));
        let s = StatsContainerResponse {
            memory_bytes: u64::MAX,
            ..Default::default()
        };
        assert_eq!(message_to_json(&s)["memory_bytes"], json!(u64::MAX));
        let h = HealthCheckResponse {
            status: cloister_protocol::health_check_response::ServingStatus::SERVING.into(),
            ..Default::default()
        };
        assert_eq!(message_to_json(&h)["status"], json!("SERVING"));
    }
}
