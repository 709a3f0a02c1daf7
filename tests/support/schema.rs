//! Checks a JSON value against a schema of an OpenAPI 3.1 document, for the
//! parts of JSON Schema the document uses: `$ref` into the components,
//! `type` (one or several, `null` among them), `properties`, `required`,
//! `additionalProperties`, `items`, `enum`, `allOf`, `oneOf`, `anyOf`. An
//! object may hold no property its schema does not name, so a body with an
//! undocumented field fails too.

use serde_json::Value;

/// What is wrong with `value` under `schema`, each naming where; empty when
/// it fits.
pub fn problems(doc: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    check(doc, schema, value, "$", &mut found);
    found
}

/// Every `$ref` of the document that names nothing.
pub fn dangling_refs(doc: &Value) -> Vec<String> {
    let mut refs = Vec::new();
    collect_refs(doc, &mut refs);
    refs.into_iter().filter(|r| resolve(doc, r).is_none()).collect()
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                refs.push(target.clone());
            }
            map.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

fn resolve<'a>(doc: &'a Value, target: &str) -> Option<&'a Value> {
    let pointer = target.strip_prefix('#')?;
    doc.pointer(pointer)
}

/// The schema itself, or what its `$ref` names.
fn deref<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(target) => resolve(doc, target).map_or(schema, |s| deref(doc, s)),
        None => schema,
    }
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_fits(wanted: &str, value: &Value) -> bool {
    let actual = type_of(value);
    wanted == actual || (wanted == "number" && actual == "integer")
}

/// Property names a schema (and its `allOf` parts) documents; `None` when
/// it allows any.
fn known_properties(doc: &Value, schema: &Value) -> Option<Vec<String>> {
    let schema = deref(doc, schema);
    if schema.get("additionalProperties").is_some_and(|a| a != &Value::Bool(false)) {
        return None;
    }
    let mut names: Vec<String> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let mut constrained = schema.get("properties").is_some();
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        for part in parts {
            names.extend(known_properties(doc, part)?);
            constrained = true;
        }
    }
    constrained.then_some(names)
}

fn check(doc: &Value, schema: &Value, value: &Value, at: &str, found: &mut Vec<String>) {
    let schema = deref(doc, schema);
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        for part in parts {
            check_shape(doc, part, value, at, found);
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let fits = options.iter().any(|option| problems(doc, option, value).is_empty());
            if !fits {
                found.push(format!("{at}: {value} fits none of the {key} options"));
            }
        }
    }
    check_shape(doc, schema, value, at, found);
    if let (Some(object), Some(known)) = (value.as_object(), known_properties(doc, schema)) {
        for key in object.keys().filter(|key| !known.contains(key)) {
            found.push(format!("{at}.{key} is in the body but not in the schema"));
        }
    }
}

/// Type, enum, properties, items: what one schema (not its `allOf`) says.
fn check_shape(doc: &Value, schema: &Value, value: &Value, at: &str, found: &mut Vec<String>) {
    let schema = deref(doc, schema);
    if schema.get("allOf").is_some() && schema.get("properties").is_none() {
        for part in schema["allOf"].as_array().into_iter().flatten() {
            check_shape(doc, part, value, at, found);
        }
    }
    match schema.get("type") {
        Some(Value::String(wanted)) if !type_fits(wanted, value) => {
            found.push(format!("{at}: {} is not of type {wanted}", type_of(value)));
            return;
        }
        Some(Value::Array(wanted))
            if !wanted.iter().any(|w| type_fits(w.as_str().unwrap(), value)) =>
        {
            found.push(format!("{at}: {} is not one of the types {wanted:?}", type_of(value)));
            return;
        }
        _ => {}
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        found.push(format!("{at}: {value} is not one of {options:?}"));
    }
    if let Value::Object(object) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = name.as_str().unwrap();
            if !object.contains_key(name) {
                found.push(format!("{at}.{name} is required but missing"));
            }
        }
        for (key, item) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(property) => check(doc, property, item, &format!("{at}.{key}"), found),
                None => {
                    if let Some(extra) =
                        schema.get("additionalProperties").filter(|e| e.is_object())
                    {
                        check(doc, extra, item, &format!("{at}.{key}"), found);
                    }
                }
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(doc, item_schema, item, &format!("{at}[{i}]"), found);
        }
    }
}
