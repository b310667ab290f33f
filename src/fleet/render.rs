//! Renders an application's manifest templates for one cluster.
//!
//! Templates are Jinja (minijinja) producing YAML, one or more documents per
//! template. The output is validated (supported kind, name present) and
//! decorated with the ownership marks Meridian relies on later: the release
//! annotation lets a snapshot tell which release a cluster runs, the
//! managed-by label lets an operator see who owns the object.

use std::collections::{BTreeSet, HashSet};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::manifest::{Kind, Manifest};

/// Annotation carrying the release id a manifest was rendered from.
pub const RELEASE_ANNOTATION: &str = "meridian.dev/release";
/// Label marking objects Meridian manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "meridian";

/// Everything a template can see when it is rendered for one cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderContext {
    pub application: String,
    pub namespace: String,
    pub release_id: Uuid,
    pub version: String,
    pub image: String,
    pub cluster: String,
    pub region: String,
    pub params: Map<String, Value>,
}

impl RenderContext {
    /// A stand-in context for checking templates when a config is loaded,
    /// before any release or cluster exists.
    fn sample(params: Map<String, Value>) -> RenderContext {
        RenderContext {
            application: "sample-app".to_owned(),
            namespace: "sample-namespace".to_owned(),
            release_id: Uuid::nil(),
            version: "0.0.0-sample".to_owned(),
            image: "registry.invalid/sample:0.0.0".to_owned(),
            cluster: "sample-cluster".to_owned(),
            region: "sample-region".to_owned(),
            params,
        }
    }
}

/// The variables as templates see them (`release` rather than `release_id`).
#[derive(Serialize)]
struct TemplateVars<'a> {
    image: &'a str,
    version: &'a str,
    release: String,
    cluster: &'a str,
    region: &'a str,
    application: &'a str,
    namespace: &'a str,
    params: &'a Map<String, Value>,
}

/// The names in [`TemplateVars`]: anything else a template reads is a typo.
const TEMPLATE_VARIABLES: [&str; 8] = [
    "image",
    "version",
    "release",
    "cluster",
    "region",
    "application",
    "namespace",
    "params",
];

/// What went wrong, in which template (0-based index in the application's
/// list) and, when minijinja knows it, on which template line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("template #{template}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct RenderError {
    pub template: usize,
    pub line: Option<usize>,
    pub message: String,
}

impl RenderError {
    fn new(template: usize, message: impl Into<String>) -> RenderError {
        RenderError {
            template,
            line: None,
            message: message.into(),
        }
    }

    fn from_jinja(template: usize, err: &minijinja::Error) -> RenderError {
        let message = match err.detail() {
            Some(detail) => format!("{}: {detail}", err.kind()),
            None => err.kind().to_string(),
        };
        RenderError {
            template,
            line: err.line(),
            message,
        }
    }
}

/// Renders every template for one cluster and returns the objects in
/// template order.
pub fn render(templates: &[String], ctx: &RenderContext) -> Result<Vec<Manifest>, RenderError> {
    let env = environment();
    let vars = TemplateVars {
        image: &ctx.image,
        version: &ctx.version,
        release: ctx.release_id.to_string(),
        cluster: &ctx.cluster,
        region: &ctx.region,
        application: &ctx.application,
        namespace: &ctx.namespace,
        params: &ctx.params,
    };
    let mut manifests = Vec::new();
    // Two templates producing the same object would make the second apply
    // silently win; that is always an authoring mistake.
    let mut seen = HashSet::new();
    for (index, source) in templates.iter().enumerate() {
        let name = template_name(index);
        let template = env
            .template_from_named_str(&name, source)
            .map_err(|e| RenderError::from_jinja(index, &e))?;
        let text = template
            .render(&vars)
            .map_err(|e| RenderError::from_jinja(index, &e))?;
        for manifest in parse_documents(index, &text)? {
            let manifest = finish(index, manifest, ctx)?;
            let identity = (
                manifest.kind().to_owned(),
                manifest.namespace().unwrap_or_default().to_owned(),
                manifest.name().to_owned(),
            );
            if !seen.insert(identity) {
                return Err(RenderError::new(
                    index,
                    format!("{} is rendered more than once", manifest.describe()),
                ));
            }
            manifests.push(manifest);
        }
    }
    Ok(manifests)
}

/// Checks templates when a config is loaded: syntax, unknown variables
/// (anywhere, also in branches a sample render would not take), and a full
/// render with a sample context and no params, so every `params.x` must have
/// a `default`. Use [`check_templates_with_params`] when the application
/// declares base params.
pub fn check_templates(templates: &[String]) -> Result<(), RenderError> {
    check_templates_with_params(templates, &Map::new())
}

/// [`check_templates`] with the params every cluster will at least receive.
pub fn check_templates_with_params(
    templates: &[String],
    params: &Map<String, Value>,
) -> Result<(), RenderError> {
    let env = environment();
    let mut known: BTreeSet<String> = TEMPLATE_VARIABLES.iter().map(|v| (*v).to_owned()).collect();
    known.extend(env.globals().map(|(name, _)| name.to_owned()));
    for (index, source) in templates.iter().enumerate() {
        let name = template_name(index);
        let template = env
            .template_from_named_str(&name, source)
            .map_err(|e| RenderError::from_jinja(index, &e))?;
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !known.contains(v))
            .collect();
        unknown.sort();
        if !unknown.is_empty() {
            return Err(RenderError::new(
                index,
                format!(
                    "unknown variable(s) {}; templates can use {}",
                    unknown.join(", "),
                    TEMPLATE_VARIABLES.join(", ")
                ),
            ));
        }
    }
    render(templates, &RenderContext::sample(params.clone())).map(|_| ())
}

fn template_name(index: usize) -> String {
    format!("template #{index}")
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // SemiStrict: printing, iterating or coercing an undefined value fails, so
    // `{{ imagee }}` is an error instead of an empty image; but an undefined
    // value may still flow into a filter (`params.replicas | default(2)`) and be
    // tested in `{% if params.tls %}`, which full Strict would reject and
    // force every optional param to be spelled `is defined`. Typos in names
    // that only appear in `if` conditions are caught by check_templates'
    // undeclared-variable scan.
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    // The output is YAML, not HTML: escaping `&` or quotes would corrupt values.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env
}

/// Splits rendered YAML into documents, skipping empty ones (a trailing `---`
/// or a document whose content was switched off by an `if`).
fn parse_documents(template: usize, text: &str) -> Result<Vec<Value>, RenderError> {
    let mut documents = Vec::new();
    for (doc_index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" at rendered line {}, column {}", l.line(), l.column()))
                .unwrap_or_default();
            RenderError::new(
                template,
                format!("document {doc_index} is not valid YAML{at}: {e}"),
            )
        })?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// Validates one document and adds namespace, release annotation and label.
fn finish(template: usize, mut value: Value, ctx: &RenderContext) -> Result<Manifest, RenderError> {
    let fail = |message: String| RenderError::new(template, message);
    let object = value
        .as_object_mut()
        .ok_or_else(|| fail("a document is not a mapping".to_owned()))?;
    let api_version = string_field(object, "apiVersion")
        .ok_or_else(|| fail("a document has no apiVersion".to_owned()))?;
    let kind =
        string_field(object, "kind").ok_or_else(|| fail("a document has no kind".to_owned()))?;
    if Kind::from_type(&api_version, &kind).is_none() {
        let supported: Vec<String> = Kind::ALL
            .iter()
            .map(|k| format!("{} ({})", k.name(), k.api_version()))
            .collect();
        return Err(fail(format!(
            "{kind} ({api_version}) is not supported; supported kinds: {}",
            supported.join(", ")
        )));
    }
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| fail(format!("{kind}: metadata is not a mapping")))?;
    let name = string_field(metadata, "name")
        .ok_or_else(|| fail(format!("{kind}: metadata.name is missing or empty")))?;
    match metadata.get("namespace") {
        None | Some(Value::Null) => {
            metadata.insert("namespace".to_owned(), Value::String(ctx.namespace.clone()));
        }
        Some(Value::String(ns)) if !ns.is_empty() => {}
        Some(_) => {
            return Err(fail(format!(
                "{kind} {name}: metadata.namespace is not a non-empty string"
            )));
        }
    }
    insert_into_map(
        metadata,
        "annotations",
        RELEASE_ANNOTATION,
        &ctx.release_id.to_string(),
    )
    .map_err(|m| fail(format!("{kind} {name}: {m}")))?;
    insert_into_map(metadata, "labels", MANAGED_BY_LABEL, MANAGED_BY_VALUE)
        .map_err(|m| fail(format!("{kind} {name}: {m}")))?;
    Ok(Manifest(value))
}

fn string_field(object: &Map<String, Value>, key: &str) -> Option<String> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Sets `metadata.<map>.<key> = value`, creating the map when absent or null.
fn insert_into_map(
    metadata: &mut Map<String, Value>,
    map: &str,
    key: &str,
    value: &str,
) -> Result<(), String> {
    let entry = metadata
        .entry(map)
        .or_insert_with(|| Value::Object(Map::new()));
    if entry.is_null() {
        *entry = Value::Object(Map::new());
    }
    let target = entry
        .as_object_mut()
        .ok_or_else(|| format!("metadata.{map} is not a mapping"))?;
    target.insert(key.to_owned(), Value::String(value.to_owned()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> RenderContext {
        let mut params = Map::new();
        params.insert("replicas".to_owned(), json!(5));
        RenderContext {
            application: "shop".to_owned(),
            namespace: "shop-ns".to_owned(),
            release_id: Uuid::from_u128(0x1234),
            version: "1.2.3".to_owned(),
            image: "registry.example/shop:1.2.3".to_owned(),
            cluster: "eu-1".to_owned(),
            region: "europe".to_owned(),
            params,
        }
    }

    const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ application }}
  labels:
    region: {{ region }}
spec:
  replicas: {{ params.replicas | default(2) }}
  template:
    metadata:
      labels: {cluster: "{{ cluster }}", version: "{{ version }}", release: "{{ release }}"}
    spec:
      containers:
        - name: app
          image: "{{ image }}"
          env: [{name: SURGE, value: "{{ params.surge | default('25%') }}"}, {name: NS, value: "{{ namespace }}"}]
"#;

    #[test]
    fn renders_variables_and_decorates() {
        let out = render(&[DEPLOYMENT.to_owned()], &ctx()).expect("renders");
        assert_eq!(out.len(), 1);
        let m = &out[0];
        assert_eq!(m.kind(), "Deployment");
        assert_eq!(m.name(), "shop");
        assert_eq!(m.namespace(), Some("shop-ns"));
        let v = &m.0;
        assert_eq!(v["spec"]["replicas"], json!(5));
        let container = &v["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], json!("registry.example/shop:1.2.3"));
        assert_eq!(container["env"][0]["value"], json!("25%"));
        assert_eq!(container["env"][1]["value"], json!("shop-ns"));
        let pod_labels = &v["spec"]["template"]["metadata"]["labels"];
        assert_eq!(pod_labels["cluster"], json!("eu-1"));
        assert_eq!(pod_labels["version"], json!("1.2.3"));
        assert_eq!(
            pod_labels["release"],
            json!(Uuid::from_u128(0x1234).to_string())
        );
        assert_eq!(v["metadata"]["labels"]["region"], json!("europe"));
        assert_eq!(v["metadata"]["labels"][MANAGED_BY_LABEL], json!("meridian"));
        assert_eq!(
            v["metadata"]["annotations"][RELEASE_ANNOTATION],
            json!(Uuid::from_u128(0x1234).to_string())
        );
    }

    #[test]
    fn default_applies_when_param_is_missing() {
        let mut c = ctx();
        c.params.clear();
        let out = render(&[DEPLOYMENT.to_owned()], &c).expect("renders");
        assert_eq!(out[0].0["spec"]["replicas"], json!(2));
    }

    #[test]
    fn if_on_an_optional_param_is_allowed() {
        let t = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n{% if params.tls %}  tls: \"on\"\n{% endif %}  x: \"1\"\n";
        let out = render(&[t.to_owned()], &ctx()).expect("renders");
        assert_eq!(out[0].0["data"], json!({"x": "1"}));
    }

    #[test]
    fn typo_is_an_error_with_line() {
        let t = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ imagee }}\n";
        let err = render(&["".to_owned(), t.to_owned()], &ctx()).expect_err("typo");
        assert_eq!(err.template, 1);
        assert_eq!(err.line, Some(4));
        assert!(err.message.contains("undefined"), "{err}");
        assert!(err.to_string().starts_with("template #1 line 4:"), "{err}");
    }

    #[test]
    fn missing_param_without_default_is_an_error() {
        let t = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {x: \"{{ params.nope }}\"}\n";
        let err = render(&[t.to_owned()], &ctx()).expect_err("undefined param");
        assert_eq!(err.line, Some(4));
    }

    #[test]
    fn syntax_error_names_template_and_line() {
        let t = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ application }\n";
        let err = render(&[t.to_owned()], &ctx()).expect_err("syntax");
        assert_eq!(err.template, 0);
        assert_eq!(err.line, Some(3));
        assert!(err.message.contains("syntax"), "{err}");
    }

    #[test]
    fn multiple_documents_and_empty_ones() {
        let t = "---\napiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: other}\n---\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: k, labels: null}\n---\n";
        let out = render(&[t.to_owned()], &ctx()).expect("renders");
        assert_eq!(out.len(), 2);
        // An explicit namespace is kept; a missing one gets the app's.
        assert_eq!(out[0].namespace(), Some("other"));
        assert_eq!(out[1].namespace(), Some("shop-ns"));
        assert_eq!(
            out[1].0["metadata"]["labels"][MANAGED_BY_LABEL],
            json!("meridian")
        );
    }

    #[test]
    fn output_is_not_html_escaped() {
        let mut c = ctx();
        c.params.insert("q".to_owned(), json!("a&b<c>\"d"));
        let t =
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {q: '{{ params.q }}'}\n";
        let out = render(&[t.to_owned()], &c).expect("renders");
        assert_eq!(out[0].0["data"]["q"], json!("a&b<c>\"d"));
    }

    #[test]
    fn rejects_unsupported_kind_and_missing_fields() {
        let cases = [
            (
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x}\n",
                "not supported",
            ),
            (
                "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: x}\n",
                "not supported",
            ),
            ("kind: ConfigMap\nmetadata: {name: x}\n", "no apiVersion"),
            ("apiVersion: v1\nmetadata: {name: x}\n", "no kind"),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
                "metadata.name",
            ),
            ("apiVersion: v1\nkind: ConfigMap\n", "metadata.name"),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: [1]\n",
                "metadata is not a mapping",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, annotations: [1]}\n",
                "annotations is not a mapping",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: 3}\n",
                "namespace",
            ),
            ("- just\n- a list\n", "not a mapping"),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n",
                "not valid YAML",
            ),
        ];
        for (template, expected) in cases {
            let err = render(&[template.to_owned()], &ctx()).expect_err(template);
            assert!(err.message.contains(expected), "{template:?}: {err}");
        }
    }

    #[test]
    fn duplicate_objects_are_rejected() {
        let t = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n".to_owned();
        let err = render(&[t.clone(), t], &ctx()).expect_err("duplicate");
        assert_eq!(err.template, 1);
        assert!(err.message.contains("ConfigMap shop-ns/x"), "{err}");
    }

    #[test]
    fn check_templates_accepts_good_and_catches_typos_in_untaken_branches() {
        check_templates(&[DEPLOYMENT.to_owned()]).expect("valid");
        let t = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n{% if params.never %}data: {a: \"{{ imagee }}\"}{% endif %}\n";
        let err = check_templates(&[t.to_owned()]).expect_err("typo");
        assert!(err.message.contains("imagee"), "{err}");
        // Globals such as range() are not mistaken for typos.
        let t = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n{% for i in range(2) %}  k{{ i }}: v\n{% endfor %}";
        check_templates(&[t.to_owned()]).expect("range is a global");
    }

    #[test]
    fn check_templates_requires_defaults_or_base_params() {
        let t = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: \"{{ params.tier }}\"}\n".to_owned();
        let err = check_templates(std::slice::from_ref(&t)).expect_err("no default");
        assert_eq!(err.line, Some(4));
        let mut base = Map::new();
        base.insert("tier".to_owned(), json!("gold"));
        check_templates_with_params(&[t], &base).expect("base param given");
        let err = check_templates(&["{% if %}".to_owned()]).expect_err("syntax");
        assert_eq!(err.line, Some(1));
    }
}
