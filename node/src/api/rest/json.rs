//! JSON to proto messages and back, by the messages' own descriptors (proto3's JSON mapping with
//! the proto field names, enums by name, 64-bit integers as numbers, every field present), so
//! that REST carries exactly the messages gRPC does and nothing is written twice.

use std::sync::LazyLock;

use corral_raft::ClusterError;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, SerializeOptions,
};
use serde_json::{Map, Value};

/// The descriptors of corral.proto.
pub static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(corral_proto::FILE_DESCRIPTOR_SET).expect("the descriptors built into this binary decode")
});

/// The descriptor of a message of package corral.v1 by its short name.
pub fn message(name: &str) -> MessageDescriptor {
    POOL.get_message_by_name(&format!("corral.v1.{name}"))
        .unwrap_or_else(|| panic!("corral.v1.{name} is not a message of corral.proto"))
}

fn serialize_options() -> SerializeOptions {
    SerializeOptions::new().stringify_64_bit_integers(false).use_proto_field_name(true).skip_default_fields(false)
}

/// A proto message as JSON.
pub fn to_json<T: prost::Message>(desc: &MessageDescriptor, msg: &T) -> Result<Vec<u8>, ClusterError> {
    let bytes = msg.encode_to_vec();
    let dynamic = DynamicMessage::decode(desc.clone(), bytes.as_slice())
        .map_err(|e| ClusterError::Internal(format!("an answer of type {} did not re-decode: {e}", desc.name())))?;
    let mut out = Vec::with_capacity(bytes.len() * 2 + 16);
    let mut ser = serde_json::Serializer::new(&mut out);
    dynamic.serialize_with_options(&mut ser, &serialize_options()).map_err(|e| {
        ClusterError::Internal(format!("an answer of type {} did not encode as JSON: {e}", desc.name()))
    })?;
    Ok(out)
}

/// A JSON object (the body, with path and query parameters put in) as the proto message `T`.
/// Unknown fields, wrong types and out-of-range numbers are refused by name.
pub fn from_json<T: prost::Message + Default>(desc: &MessageDescriptor, value: Value) -> Result<T, ClusterError> {
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let dynamic = DynamicMessage::deserialize_with_options(desc.clone(), value, &options)
        .map_err(|e| ClusterError::invalid("body", format!("not a {} in JSON: {e}", desc.name())))?;
    T::decode(prost::Message::encode_to_vec(&dynamic).as_slice())
        .map_err(|e| ClusterError::invalid("body", format!("not a {}: {e}", desc.name())))
}

/// A path or query parameter's text as the JSON value of field `name` of `desc`: the field's
/// own type (a number, a boolean, an enum's name, a string), or an error naming the parameter.
pub fn parameter(desc: &MessageDescriptor, name: &str, text: &str) -> Result<(FieldDescriptor, Value), ClusterError> {
    let field = desc
        .get_field_by_name(name)
        .or_else(|| desc.get_field_by_json_name(name))
        .ok_or_else(|| ClusterError::invalid(name, format!("is not a parameter of {}", desc.name())))?;
    let bad =
        |what: &str| ClusterError::invalid(name, format!("must be {what}, not '{}'", corral_raft::error::quote(text)));
    let value = match field.kind() {
        Kind::Bool => match text {
            "true" | "1" | "" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return Err(bad("true or false")),
        },
        Kind::String => Value::String(text.to_string()),
        Kind::Bytes => return Err(bad("given in a JSON body (it is bytes)")),
        Kind::Enum(_) => Value::String(text.to_string()),
        Kind::Message(m) => {
            return Err(ClusterError::invalid(name, format!("is a {} and is given in a JSON body", m.name())))
        }
        Kind::Double | Kind::Float => text
            .parse::<f64>()
            .ok()
            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            .ok_or_else(|| bad("a number"))?,
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::Number(text.parse::<i64>().map_err(|_| bad("a whole number"))?.into())
        }
        Kind::Uint32 | Kind::Fixed32 | Kind::Uint64 | Kind::Fixed64 => {
            Value::Number(text.parse::<u64>().map_err(|_| bad("a whole number, 0 or more"))?.into())
        }
    };
    Ok((field, value))
}

/// Puts parameter `name` = `text` into `object`; a repeated field collects every value given.
pub fn put_parameter(
    desc: &MessageDescriptor,
    object: &mut Map<String, Value>,
    name: &str,
    text: &str,
) -> Result<(), ClusterError> {
    let (field, value) = parameter(desc, name, text)?;
    let key = field.name().to_string();
    if field.is_list() {
        match object.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
            Value::Array(items) => items.push(value),
            _ => return Err(ClusterError::invalid(name, "is given both in the body and as a parameter")),
        }
    } else if field.is_map() {
        return Err(ClusterError::invalid(name, "is a map and is given in a JSON body"));
    } else {
        object.insert(key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::{GetVmRequest, Vm, VmStatus};

    #[test]
    fn a_message_round_trips_with_proto_names_enum_names_and_numbers() {
        let vm = Vm {
            name: "web1".into(),
            memory_mib: 1 << 40,
            status_enum: VmStatus::Up as i32,
            host: Some("h1".into()),
            ..Default::default()
        };
        let json: Value = serde_json::from_slice(&to_json(&message("Vm"), &vm).unwrap()).unwrap();
        assert_eq!(json["memory_mib"], 1u64 << 40);
        assert_eq!(json["status_enum"], "VM_STATUS_UP");
        assert_eq!(json["host"], "h1");
        // Defaults are written out: a client sees every field.
        assert_eq!(json["description"], "");
        assert_eq!(json["disks"], serde_json::json!([]));
        let back: Vm = from_json(&message("Vm"), json).unwrap();
        assert_eq!(back, vm);
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused_by_name() {
        let desc = message("GetVmRequest");
        let e = from_json::<GetVmRequest>(&desc, serde_json::json!({"vm": "a", "colour": 1})).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = from_json::<GetVmRequest>(&desc, serde_json::json!({"vm": 5})).unwrap_err();
        assert!(e.to_string().contains("GetVmRequest"), "{e}");
    }

    #[test]
    fn parameters_take_their_fields_types() {
        let desc = message("GetVmRequest");
        let mut o = Map::new();
        put_parameter(&desc, &mut o, "vm", "web1").unwrap();
        put_parameter(&desc, &mut o, "next_run", "true").unwrap();
        let req: GetVmRequest = from_json(&desc, Value::Object(o)).unwrap();
        assert_eq!((req.vm.as_str(), req.next_run), ("web1", true));
        let e = put_parameter(&desc, &mut Map::new(), "next_run", "maybe").unwrap_err();
        assert!(e.to_string().contains("next_run"), "{e}");
        let e = put_parameter(&desc, &mut Map::new(), "colour", "red").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }
}
