//! The OpenAPI 3 document of the REST API, made from the route table and the proto
//! descriptors: what a client sends and gets is what this says, since both come from the same
//! messages. Served at /api/v1/openapi.json.

use std::collections::{BTreeMap, BTreeSet};

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{json, Map, Value};

use super::json::message;
use super::routes::Route;

/// The document, as JSON bytes.
pub fn document(routes: &[Route]) -> Vec<u8> {
    let mut schemas = BTreeMap::new();
    let mut paths: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for r in routes {
        let request = message(r.request);
        let in_path: BTreeSet<String> = r.parameters().map(|p| r.field_of(p).to_string()).collect();
        let mut parameters: Vec<Value> = r
            .parameters()
            .map(|p| {
                let field = request.get_field_by_name(r.field_of(p)).expect("checked by the route table's test");
                json!({ "name": p, "in": "path", "required": true, "schema": scalar(&field) })
            })
            .collect();
        let mut operation = json!({
            "operationId": r.operation_id(),
            "summary": r.summary,
            "tags": [r.service],
            "responses": {
                "200": {
                    "description": format!("a {}", r.response),
                    "content": { "application/json": { "schema": reference(&message(r.response), &mut schemas) } }
                },
                "default": {
                    "description": "refused: the HTTP status of the gRPC code, and the same words as the CLI's",
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
                }
            }
        });
        // Logging in and reading the CA need no credentials.
        if matches!(r.rpc, "login" | "ca") {
            operation["security"] = json!([]);
        }
        if r.has_body() {
            // The body is the request message; fields the path gives are left out of it.
            let schema = object(&request, &in_path, &mut schemas);
            operation["requestBody"] =
                json!({ "required": false, "content": { "application/json": { "schema": schema } } });
        } else {
            for field in request.fields().filter(|f| !in_path.contains(f.name())) {
                if let Some(schema) = query_schema(&field) {
                    parameters
                        .push(json!({ "name": field.name(), "in": "query", "required": false, "schema": schema }));
                }
            }
        }
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        paths.entry(r.path).or_default().insert(r.method.as_str().to_ascii_lowercase(), operation);
    }
    schemas.insert(
        "Error".to_string(),
        json!({
            "type": "object",
            "required": ["code", "status", "message"],
            "properties": {
                "code": { "type": "string", "description": "the gRPC code's name, e.g. NOT_FOUND" },
                "status": { "type": "integer" },
                "message": { "type": "string" }
            }
        }),
    );
    let doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Corral",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The REST API of a Corral cluster, on every node's port beside gRPC: the same calls, \
                checks and errors. Log in with POST /api/v1/login and send `Authorization: Bearer TOKEN` \
                (an API token works the same), or present a user's client certificate. Messages are proto3's \
                JSON mapping of corral.proto with its field names. Websockets (not described here): \
                /api/v1/events/websocket, /api/v1/vms/{vm}/console/websocket, /api/v1/vms/{vm}/vnc/websocket \
                (browsers give the token as the subprotocol corral.bearer.TOKEN)."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }
        },
        "security": [ { "bearer": [] } ]
    });
    serde_json::to_vec(&doc).expect("a JSON value encodes")
}

/// `$ref` to a message's schema, adding it (and what it holds) to `schemas` the first time.
fn reference(desc: &MessageDescriptor, schemas: &mut BTreeMap<String, Value>) -> Value {
    let name = desc.name().to_string();
    if !schemas.contains_key(&name) {
        // Reserved first, so that a message that holds itself refers to itself.
        schemas.insert(name.clone(), Value::Null);
        let schema = object(desc, &BTreeSet::new(), schemas);
        schemas.insert(name.clone(), schema);
    }
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A message's fields as a JSON object's properties (leaving out `skip`).
fn object(desc: &MessageDescriptor, skip: &BTreeSet<String>, schemas: &mut BTreeMap<String, Value>) -> Value {
    let mut properties = Map::new();
    for field in desc.fields().filter(|f| !skip.contains(f.name())) {
        let one = match field.kind() {
            Kind::Message(m) => reference(&m, schemas),
            _ => scalar(&field),
        };
        let schema = if field.is_map() {
            // A map entry's value: its second field.
            let value = match field.kind() {
                Kind::Message(entry) => entry.map_entry_value_field(),
                _ => unreachable!("a map field's kind is its entry message"),
            };
            let value = match value.kind() {
                Kind::Message(m) => reference(&m, schemas),
                _ => scalar(&value),
            };
            json!({ "type": "object", "additionalProperties": value })
        } else if field.is_list() {
            json!({ "type": "array", "items": one })
        } else {
            one
        };
        properties.insert(field.name().to_string(), schema);
    }
    json!({ "type": "object", "properties": properties })
}

/// The schema of a field that is not a message.
fn scalar(field: &FieldDescriptor) -> Value {
    match field.kind() {
        Kind::Bool => json!({ "type": "boolean" }),
        Kind::String => json!({ "type": "string" }),
        Kind::Bytes => json!({ "type": "string", "format": "byte" }),
        Kind::Double | Kind::Float => json!({ "type": "number" }),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            json!({ "type": "integer", "format": "int32", "minimum": i32::MIN, "maximum": i32::MAX })
        }
        Kind::Uint32 | Kind::Fixed32 => {
            json!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": u32::MAX })
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            json!({ "type": "integer", "format": "int64", "minimum": i64::MIN, "maximum": i64::MAX })
        }
        Kind::Uint64 | Kind::Fixed64 => json!({ "type": "integer", "minimum": 0, "maximum": u64::MAX }),
        Kind::Enum(e) => {
            let names: Vec<String> = e.values().map(|v| v.name().to_string()).collect();
            json!({ "type": "string", "enum": names })
        }
        Kind::Message(m) => json!({ "$ref": format!("#/components/schemas/{}", m.name()) }),
    }
}

/// A field given as a query parameter: scalars and lists of them (messages and bytes go in a
/// body, and are not offered).
fn query_schema(field: &FieldDescriptor) -> Option<Value> {
    if field.is_map() || matches!(field.kind(), Kind::Message(_) | Kind::Bytes) {
        return None;
    }
    Some(if field.is_list() { json!({ "type": "array", "items": scalar(field) }) } else { scalar(field) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rest::routes;

    #[test]
    fn the_document_describes_every_route_and_resolves_every_reference() {
        let doc: Value = serde_json::from_slice(&document(&routes::all())).unwrap();
        assert_eq!(doc["openapi"], "3.0.3");
        let get_vm = &doc["paths"]["/api/v1/vms/{vm}"]["get"];
        assert_eq!(get_vm["operationId"], "VmService.get");
        let params: Vec<&str> =
            get_vm["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(params, ["vm", "stale", "next_run"]);
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        assert_eq!(schemas["Vm"]["properties"]["status_enum"]["enum"][1], "VM_STATUS_DOWN");
        // Every $ref names a schema of the document.
        let text = doc.to_string();
        for piece in text.split("#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "{name} is referred to and not described");
        }
        // A body leaves out what the path gives.
        let clone = &doc["paths"]["/api/v1/vms/{vm}/clone"]["post"];
        let props = clone["requestBody"]["content"]["application/json"]["schema"]["properties"].as_object().unwrap();
        assert!(!props.contains_key("source") && props.contains_key("name"));
    }
}
