//! Server-side apply, simplified but honest: field ownership per leaf path,
//! conflicts when another manager owns a leaf whose value would change,
//! deep merge of objects with arrays replaced whole, and removal of fields a
//! manager stops applying. Pure functions over JSON, no IO.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// A path of object keys from the root, e.g. `["spec", "replicas"]`.
pub type FieldPath = Vec<String>;

/// Who owns which leaf. Several managers may share a leaf when they applied
/// the same value.
pub type Owners = BTreeMap<FieldPath, BTreeSet<String>>;

/// `.spec.template.spec.containers`, the way conflict messages print paths.
pub fn display_path(path: &[String]) -> String {
    path.iter().map(|seg| format!(".{seg}")).collect()
}

/// One contested leaf: `managers` own it and hold a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub path: FieldPath,
    pub manager: String,
}

/// The result of a successful apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub object: Value,
    pub owners: Owners,
}

/// Fields the server sets or that identify the object: applying them takes
/// no ownership, exactly like the API server treats them.
fn is_ignored(path: &[String]) -> bool {
    match path {
        [first] if first == "apiVersion" || first == "kind" => true,
        [first, ..] if first == "status" => true,
        [first, second, ..] if first == "metadata" => matches!(
            second.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "deletionTimestamp"
                | "managedFields"
                | "selfLink"
        ),
        _ => false,
    }
}

/// Flattens an applied body into its owned leaves. Objects recurse, arrays
/// and scalars are leaves, an empty object is a leaf of its own so that
/// `data: {}` still claims `data`. `null` claims nothing.
pub fn leaves(body: &Value) -> Vec<(FieldPath, &Value)> {
    fn walk<'a>(value: &'a Value, path: &mut FieldPath, out: &mut Vec<(FieldPath, &'a Value)>) {
        if is_ignored(path) {
            return;
        }
        match value {
            Value::Null => {}
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    path.push(key.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            // The root itself is never a leaf.
            _ if path.is_empty() => {}
            _ => out.push((path.clone(), value)),
        }
    }
    let mut out = Vec::new();
    walk(body, &mut Vec::new(), &mut out);
    out
}

/// The value at `path`, if every step is an object key.
pub fn get_path<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |node, key| node.as_object()?.get(key))
}

/// Sets `path` to `value`, creating (or replacing non-object) parents.
fn set_path(root: &mut Value, path: &[String], value: &Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = root;
    for key in parents {
        node = ensure_object(node)
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let map = ensure_object(node);
    // Merging `{}` into an existing object changes nothing.
    if value.as_object().is_some_and(Map::is_empty) && map.get(last).is_some_and(Value::is_object) {
        return;
    }
    map.insert(last.clone(), value.clone());
}

fn ensure_object(node: &mut Value) -> &mut Map<String, Value> {
    match node {
        Value::Object(map) => map,
        other => {
            *other = Value::Object(Map::new());
            match other {
                Value::Object(map) => map,
                _ => unreachable!("the value was just replaced by an object"),
            }
        }
    }
}

/// Removes `path`, then parents that became empty, but never a top-level
/// section (`metadata`, `spec`, `data` …) so the object keeps its shape.
fn remove_path(root: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let Some(parent) = get_path_mut(root, parents) else {
        return;
    };
    let Some(map) = parent.as_object_mut() else {
        return;
    };
    map.remove(last);
    if map.is_empty() && parents.len() > 1 {
        remove_path(root, parents);
    }
}

fn get_path_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter()
        .try_fold(value, |node, key| node.as_object_mut()?.get_mut(key))
}

fn is_prefix(prefix: &[String], path: &[String]) -> bool {
    path.len() >= prefix.len() && path[..prefix.len()] == *prefix
}

/// Applies `body` as `manager`. Without `force`, a leaf owned by another
/// manager whose current value differs from the applied one is a conflict.
pub fn apply(
    current: Option<&Value>,
    owners: &Owners,
    body: &Value,
    manager: &str,
    force: bool,
) -> Result<Applied, Vec<Conflict>> {
    let empty = Value::Object(Map::new());
    let current = current.unwrap_or(&empty);
    let applied = leaves(body);

    let conflicts: Vec<Conflict> = applied
        .iter()
        .filter(|(path, value)| get_path(current, path) != Some(*value))
        .flat_map(|(path, _)| {
            owners
                .get(path)
                .into_iter()
                .flatten()
                .filter(|owner| owner.as_str() != manager)
                .map(|owner| Conflict {
                    path: path.clone(),
                    manager: owner.clone(),
                })
        })
        .collect();
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }

    let mut object = current.clone();
    let mut new_owners = owners.clone();
    for (path, value) in &applied {
        set_path(&mut object, path, value);
        let entry = new_owners.entry(path.clone()).or_default();
        if get_path(current, path) != Some(*value) {
            // The value changed: whoever held the old value no longer owns it
            // (only possible here with force, or when nobody else owned it).
            entry.clear();
        }
        entry.insert(manager.to_owned());
    }

    // Fields this manager applied before but not now are released; if nobody
    // else owns them they are removed, which is how SSA deletes fields.
    let applied_paths: Vec<&FieldPath> = applied.iter().map(|(p, _)| p).collect();
    let released: Vec<FieldPath> = owners
        .iter()
        .filter(|(path, who)| who.contains(manager) && !applied_paths.contains(path))
        .map(|(path, _)| path.clone())
        .collect();
    for path in released {
        let Some(who) = new_owners.get_mut(&path) else {
            continue;
        };
        who.remove(manager);
        if who.is_empty() {
            new_owners.remove(&path);
            // A released path that overlaps a newly applied one was already
            // replaced by the merge; removing it would drop the new value.
            let overlaps = applied_paths
                .iter()
                .any(|p| is_prefix(p, &path) || is_prefix(&path, p));
            if !overlaps {
                remove_path(&mut object, &path);
            }
        }
    }
    // Ownership of leaves now hidden under a replaced value is meaningless.
    new_owners.retain(|path, who| !who.is_empty() && get_path(&object, path).is_some());

    Ok(Applied {
        object,
        owners: new_owners,
    })
}

/// The message the API server gives for apply conflicts.
pub fn conflict_message(conflicts: &[Conflict], api_version: &str) -> String {
    let describe = |manager: &str| format!("{manager:?} using {api_version}");
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            describe(&only.manager),
            display_path(&only.path)
        );
    }
    let mut by_manager: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for c in conflicts {
        by_manager
            .entry(&c.manager)
            .or_default()
            .push(display_path(&c.path));
    }
    let lines: Vec<String> = by_manager
        .iter()
        .flat_map(|(manager, paths)| {
            std::iter::once(format!("conflicts with {}:", describe(manager)))
                .chain(paths.iter().map(|p| format!("- {p}")))
        })
        .collect();
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// The `managedFields` tree (`FieldsV1`) of one manager: nested `f:<key>`
/// maps ending in `{}`.
pub fn fields_v1(owners: &Owners, manager: &str) -> Value {
    let mut root = Value::Object(Map::new());
    for (path, who) in owners {
        if who.contains(manager) {
            let keys: Vec<String> = path.iter().map(|k| format!("f:{k}")).collect();
            set_path(&mut root, &keys, &Value::Object(Map::new()));
        }
    }
    root
}

/// Every manager that owns at least one field.
pub fn managers(owners: &Owners) -> BTreeSet<String> {
    owners.values().flatten().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(p: &str) -> FieldPath {
        p.split('.')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn leaves_skip_identity_and_status_and_keep_arrays_whole() {
        let body = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "a"}]}}},
            "status": {"replicas": 9}
        });
        let got: Vec<String> = leaves(&body).iter().map(|(p, _)| display_path(p)).collect();
        assert_eq!(
            got,
            vec![
                ".metadata.labels.app",
                ".spec.replicas",
                ".spec.template.spec.containers"
            ]
        );
    }

    #[test]
    fn second_manager_conflicts_only_on_changed_values() {
        let first = json!({"spec": {"replicas": 2, "paused": false}});
        let a = apply(None, &Owners::new(), &first, "kubectl", false).expect("create");
        // Same value: shared ownership, no conflict.
        let same = json!({"spec": {"replicas": 2}});
        let b = apply(Some(&a.object), &a.owners, &same, "meridian", false).expect("shared");
        assert_eq!(b.owners[&path("spec.replicas")].len(), 2);
        // Different value: conflict naming the other manager.
        let other = json!({"spec": {"replicas": 3}});
        let err =
            apply(Some(&a.object), &a.owners, &other, "meridian", false).expect_err("conflict");
        assert_eq!(
            err,
            vec![Conflict {
                path: path("spec.replicas"),
                manager: "kubectl".into()
            }]
        );
        assert_eq!(
            conflict_message(&err, "apps/v1"),
            "Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1: .spec.replicas"
        );
        // Force takes the field.
        let forced = apply(Some(&a.object), &a.owners, &other, "meridian", true).expect("force");
        assert_eq!(forced.object["spec"]["replicas"], 3);
        assert_eq!(
            forced.owners[&path("spec.replicas")],
            BTreeSet::from(["meridian".to_owned()])
        );
        assert_eq!(
            forced.owners[&path("spec.paused")],
            BTreeSet::from(["kubectl".to_owned()])
        );
    }

    #[test]
    fn merge_replaces_arrays_and_removes_released_fields() {
        let v1 = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"ports": [1, 2]}});
        let first = apply(None, &Owners::new(), &v1, "m", false).expect("create");
        let v2 = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"ports": [3]}});
        let second = apply(Some(&first.object), &first.owners, &v2, "m", false).expect("update");
        assert_eq!(
            second.object,
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"ports": [3]}})
        );
        assert!(!second.owners.contains_key(&path("metadata.labels.b")));
    }

    #[test]
    fn multi_conflict_message_groups_by_manager() {
        let conflicts = vec![
            Conflict {
                path: path("spec.replicas"),
                manager: "b".into(),
            },
            Conflict {
                path: path("spec.paused"),
                manager: "a".into(),
            },
        ];
        assert_eq!(
            conflict_message(&conflicts, "apps/v1"),
            "Apply failed with 2 conflicts: conflicts with \"a\" using apps/v1:\n- .spec.paused\n\
             conflicts with \"b\" using apps/v1:\n- .spec.replicas"
        );
    }

    #[test]
    fn fields_v1_nests_owned_paths() {
        let body = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": []}}}});
        let applied = apply(None, &Owners::new(), &body, "m", false).expect("create");
        assert_eq!(
            fields_v1(&applied.owners, "m"),
            json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {}}}}})
        );
    }
}
