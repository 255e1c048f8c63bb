//! Model-local functions (ModelProto.functions): each call is replaced by
//! the function's body at load, so the rest of dr sees only ONNX ops. Formal
//! inputs and outputs become the call's values, every other value of the
//! body gets a name unique in the graph, and an attribute that refers to the
//! caller's (`ref_attr_name`) takes the caller's value, else the function's
//! default, else is left out (as the ONNX spec says).

use std::collections::HashSet;

use super::proto::{AttributeProto, FunctionProto, NodeProto};

/// Calls nested deeper than this are taken as recursion.
const MAX_DEPTH: usize = 32;

fn domain(d: &Option<String>) -> &str {
    match d.as_deref() {
        None | Some("") | Some("ai.onnx") => "",
        Some(d) => d,
    }
}

/// The function `n` calls, if any.
fn callee<'a>(n: &NodeProto, functions: &'a [FunctionProto]) -> Option<&'a FunctionProto> {
    functions
        .iter()
        .find(|f| f.name == n.op_type && domain(&f.domain) == domain(&n.domain))
}

/// `nodes` with every call of a local function replaced by its body.
pub fn inline(
    nodes: &[NodeProto],
    functions: &[FunctionProto],
    taken: &mut HashSet<String>,
) -> Result<Vec<NodeProto>, String> {
    if functions.is_empty() {
        return Ok(nodes.to_vec());
    }
    let mut out = Vec::with_capacity(nodes.len());
    for n in nodes {
        expand(n, functions, taken, 0, &mut out)?;
    }
    Ok(out)
}

fn expand(
    n: &NodeProto,
    functions: &[FunctionProto],
    taken: &mut HashSet<String>,
    depth: usize,
    out: &mut Vec<NodeProto>,
) -> Result<(), String> {
    let Some(f) = callee(n, functions) else {
        out.push(n.clone());
        return Ok(());
    };
    let fname = f.name.clone().unwrap_or_default();
    if depth >= MAX_DEPTH {
        return Err(format!(
            "function `{fname}` calls itself (more than {MAX_DEPTH} nested calls)"
        ));
    }
    let call = n
        .name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| fname.clone());
    if n.input.len() > f.input.len() || n.output.len() > f.output.len() {
        return Err(format!(
            "call `{call}` of function `{fname}` has {} inputs and {} outputs; the function takes {} and gives {}",
            n.input.len(),
            n.output.len(),
            f.input.len(),
            f.output.len()
        ));
    }
    // Formal name → actual name; values of the body get fresh names.
    let mut map: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for (k, formal) in f.input.iter().enumerate() {
        map.insert(formal.clone(), n.input.get(k).cloned().unwrap_or_default());
    }
    for (k, formal) in f.output.iter().enumerate() {
        let actual = match n.output.get(k).filter(|o| !o.is_empty()) {
            Some(actual) => actual.clone(),
            None => fresh(&call, formal, taken),
        };
        map.insert(formal.clone(), actual);
    }
    for inner in &f.node {
        let mut node = inner.clone();
        let mut rename = |v: &'_ String| -> String {
            if v.is_empty() {
                return String::new();
            }
            if let Some(m) = map.get(v.as_str()) {
                return m.clone();
            }
            let name = fresh(&call, v, taken);
            map.insert(v.clone(), name.clone());
            name
        };
        node.input = inner.input.iter().map(&mut rename).collect();
        node.output = inner.output.iter().map(&mut rename).collect();
        node.name = Some(format!(
            "{call}/{}",
            inner
                .name
                .clone()
                .filter(|s| !s.is_empty())
                .or_else(|| inner.op_type.clone())
                .unwrap_or_default()
        ));
        node.attribute = inner
            .attribute
            .iter()
            .filter_map(|a| bind(a, n, f))
            .collect();
        expand(&node, functions, taken, depth + 1, out)?;
    }
    Ok(())
}

/// An attribute of the body with references to the caller's resolved.
fn bind(a: &AttributeProto, call: &NodeProto, f: &FunctionProto) -> Option<AttributeProto> {
    let Some(r) = a.ref_attr_name.as_deref().filter(|r| !r.is_empty()) else {
        return Some(a.clone());
    };
    let by_name =
        |list: &[AttributeProto]| list.iter().find(|x| x.name.as_deref() == Some(r)).cloned();
    let mut v = by_name(&call.attribute).or_else(|| by_name(&f.attribute_proto))?;
    v.name = a.name.clone();
    v.ref_attr_name = None;
    Some(v)
}

/// A value name unique in the graph, readable as `call/inner`.
fn fresh(call: &str, inner: &str, taken: &mut HashSet<String>) -> String {
    let base = format!("{call}/{inner}");
    let mut name = base.clone();
    let mut k = 1;
    while taken.contains(&name) {
        name = format!("{base}.{k}");
        k += 1;
    }
    taken.insert(name.clone());
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, ins: &[&str], outs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: outs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn int_attr(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            name: Some(name.into()),
            i: Some(v),
            r#type: Some(2),
            ..Default::default()
        }
    }

    /// F(x; axis=-1) = Softmax(Sigmoid(x), axis=@axis), called twice with
    /// names that collide with the body's.
    #[test]
    fn calls_are_inlined_with_fresh_names_and_bound_attributes() {
        let mut soft = node("Softmax", &["s"], &["y"]);
        soft.attribute.push(AttributeProto {
            name: Some("axis".into()),
            ref_attr_name: Some("axis".into()),
            r#type: Some(2),
            ..Default::default()
        });
        let f = FunctionProto {
            name: Some("F".into()),
            domain: Some("local".into()),
            input: vec!["x".into()],
            output: vec!["y".into()],
            attribute_proto: vec![int_attr("axis", -1)],
            node: vec![node("Sigmoid", &["x"], &["s"]), soft],
            ..Default::default()
        };
        let mut c1 = node("F", &["s"], &["a"]);
        c1.domain = Some("local".into());
        c1.name = Some("c1".into());
        c1.attribute.push(int_attr("axis", 0));
        let mut c2 = node("F", &["a"], &["y"]);
        c2.domain = Some("local".into());
        let mut taken: HashSet<String> = ["s", "a", "y"].iter().map(|s| s.to_string()).collect();
        let got = inline(&[c1, c2], &[f], &mut taken).unwrap();
        let ops: Vec<_> = got.iter().map(|n| n.op_type.clone().unwrap()).collect();
        assert_eq!(ops, ["Sigmoid", "Softmax", "Sigmoid", "Softmax"]);
        // Inputs and outputs are the caller's; the inner `s` is renamed.
        assert_eq!(got[0].input, ["s"]);
        assert_eq!(got[1].output, ["a"]);
        assert_eq!(got[0].output, got[1].input);
        assert_ne!(got[0].output[0], "s");
        assert_ne!(got[0].output, got[2].output);
        assert_eq!(got[3].output, ["y"]);
        // axis: the caller's 0, then the default -1.
        assert_eq!(got[1].attribute[0].i, Some(0));
        assert_eq!(got[3].attribute[0].i, Some(-1));
        assert!(got[1].attribute[0].ref_attr_name.is_none());
    }

    #[test]
    fn recursion_is_an_error() {
        let mut call = node("R", &["x"], &["y"]);
        call.domain = Some("local".into());
        let f = FunctionProto {
            name: Some("R".into()),
            domain: Some("local".into()),
            input: vec!["x".into()],
            output: vec!["y".into()],
            node: vec![call.clone()],
            ..Default::default()
        };
        let e = inline(&[call], &[f], &mut HashSet::new()).unwrap_err();
        assert!(e.contains("calls itself"), "{e}");
    }
}
