//! Validation of a CanaryRoute's `spec` (SPEC section 10): the route checks
//! of `weir.yaml`, so a wrong value gets the same message in both, with
//! paths from `spec` (`spec.strategy.steps[1].pause.duration`) instead of
//! file locations.
//!
//! Pure: the spec arrives as the JSON value the API server returns.

use std::collections::BTreeMap;
use std::fmt;

use super::holes::Holes;
use super::{analysis_templates, check, structure, tree};
use crate::location::LocationIndex;
use crate::model::{Route, ServiceRef};
use crate::schema::{AnalysisTemplateSpec, RouteSpec};
use crate::{Diagnostic, Location};

/// A CanaryRoute's spec, validated: the route (named `NAMESPACE/NAME`, its
/// roles' endpoints as listed, possibly none) and the Service each role
/// names, whose endpoints discovery adds.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRouteSpec {
    /// The route, with the endpoints the spec lists.
    pub route: Route,
    /// The Service of the stable role.
    pub stable_service: Option<ServiceRef>,
    /// The Service of the canary role (only with a `canary`).
    pub canary_service: Option<ServiceRef>,
    /// References to AnalysisTemplates that cannot be resolved now (a
    /// template missing or invalid, an argument without a value): the
    /// route is served, and these analyses wait.
    pub waiting: Vec<SpecProblem>,
}

/// The AnalysisTemplates of one namespace (SPEC 13, Kubernetes mode), each
/// validated when added; a CanaryRoute resolves its `templateName`s here.
#[derive(Debug, Clone, Default)]
pub struct NamespaceTemplates {
    namespace: String,
    templates: BTreeMap<String, NamespaceTemplate>,
    /// The `analysisTemplates` of `weir.yaml`, also visible.
    file: Vec<AnalysisTemplateSpec>,
}

#[derive(Debug, Clone)]
struct NamespaceTemplate {
    spec: Option<AnalysisTemplateSpec>,
    problems: Vec<SpecProblem>,
}

/// One problem of a CanaryRoute's spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// The field, from `spec`: `spec.strategy.steps[1].pause.duration`.
    pub path: String,
    /// What is wrong, and what would be right (as for `weir.yaml`).
    pub message: String,
}

/// Validates the `spec` of the CanaryRoute `namespace`/`name`, in a
/// namespace without AnalysisTemplates.
///
/// # Errors
/// As [`validate_canary_route_in`].
pub fn validate_canary_route(
    namespace: &str,
    name: &str,
    spec: &serde_json::Value,
) -> Result<ClusterRouteSpec, Vec<SpecProblem>> {
    validate_canary_route_in(namespace, name, spec, &NamespaceTemplates::new(namespace))
}

/// Validates the `spec` of the AnalysisTemplate `name`: a template of
/// `weir.yaml`'s `analysisTemplates` without `name`.
///
/// # Errors
/// Every problem found, each naming its field from `spec`
/// (`spec.metrics[0].successCondition`).
pub fn validate_analysis_template(
    name: &str,
    spec: &serde_json::Value,
) -> Result<AnalysisTemplateSpec, Vec<SpecProblem>> {
    let nowhere = Location { line: 1, column: 1 };
    let root = tree::from_json(spec, nowhere).map_err(|error| {
        vec![SpecProblem {
            path: "spec".to_owned(),
            message: error.message,
        }]
    })?;
    let index = LocationIndex::default();
    let (typed, problems) = structure::check_cluster_template(&root, &index);
    let Some(mut typed) = typed else {
        return Err(to_problems(problems.structural));
    };
    if let serde_yaml_ng::Value::Mapping(map) = &mut typed {
        map.insert(
            serde_yaml_ng::Value::String("name".to_owned()),
            serde_yaml_ng::Value::String(name.to_owned()),
        );
    }
    let template: AnalysisTemplateSpec =
        serde_path_to_error::deserialize(typed).map_err(|error| {
            let path = super::key_path(error.path());
            vec![SpecProblem {
                path: format!("spec.{path}"),
                message: format!(
                    "{} (the structural check missed this: a bug in weir)",
                    error.into_inner()
                ),
            }]
        })?;
    let mut found = Vec::new();
    let holes = Holes::default();
    let valid =
        analysis_templates::check_template("spec", &template, &holes, &mut |path, message| {
            found.push(SpecProblem {
                path: path.to_owned(),
                message,
            });
        });
    match (valid, found.is_empty()) {
        (true, _) => Ok(template),
        (false, false) => Err(found),
        (false, true) => Err(vec![SpecProblem {
            path: "spec".to_owned(),
            message: "the template is invalid, but no check says why (a bug in weir)".to_owned(),
        }]),
    }
}

/// Validates the `spec` of the CanaryRoute `namespace`/`name`, resolving
/// its analysis templates among `templates` (those of its namespace).
///
/// # Errors
/// Every problem found, each naming its field from `spec`: as for
/// `weir.yaml`, structural problems (unknown fields, wrong types, missing
/// fields) are reported together and stop there; otherwise every semantic
/// problem is reported.
pub fn validate_canary_route_in(
    namespace: &str,
    name: &str,
    spec: &serde_json::Value,
    templates: &NamespaceTemplates,
) -> Result<ClusterRouteSpec, Vec<SpecProblem>> {
    // Nodes carry no place in a file; the problems carry paths only.
    let nowhere = Location { line: 1, column: 1 };
    let root = tree::from_json(spec, nowhere).map_err(|error| {
        vec![SpecProblem {
            path: "spec".to_owned(),
            message: error.message,
        }]
    })?;
    let index = LocationIndex::default();
    let (typed, problems) = structure::check_cluster_route(&root, &index);
    let Some(mut typed) = typed else {
        return Err(to_problems(problems.structural));
    };
    // A route of `weir.yaml` with the name the CanaryRoute's place gives it.
    let route_name = format!("{namespace}/{name}");
    if let serde_yaml_ng::Value::Mapping(map) = &mut typed {
        map.insert(
            serde_yaml_ng::Value::String("name".to_owned()),
            serde_yaml_ng::Value::String(route_name.clone()),
        );
    }
    let spec: RouteSpec = serde_path_to_error::deserialize(typed).map_err(|error| {
        let path = super::key_path(error.path());
        vec![SpecProblem {
            path: format!("spec.{path}"),
            message: format!(
                "{} (the structural check missed this: a bug in weir)",
                error.into_inner()
            ),
        }]
    })?;
    let mut checker = check::Checker::for_cluster(&index, templates.catalog());
    let checked = checker.cluster_route(&spec, &route_name);
    let waiting = checker
        .take_waiting()
        .into_iter()
        .map(|(path, message)| SpecProblem { path, message })
        .collect();
    let diagnostics = checker.into_diagnostics();
    match checked {
        Some((route, stable_service, canary_service)) if diagnostics.is_empty() => {
            Ok(ClusterRouteSpec {
                route,
                stable_service,
                canary_service,
                waiting,
            })
        }
        _ if diagnostics.is_empty() => Err(vec![SpecProblem {
            path: "spec".to_owned(),
            message: "the spec is invalid, but no check says why (a bug in weir)".to_owned(),
        }]),
        _ => Err(to_problems(diagnostics)),
    }
}

fn to_problems(diagnostics: Vec<Diagnostic>) -> Vec<SpecProblem> {
    diagnostics
        .into_iter()
        .map(|d| SpecProblem {
            path: d.path,
            message: d.message,
        })
        .collect()
}

// === impl NamespaceTemplates ===

impl NamespaceTemplates {
    /// No templates yet in `namespace`.
    pub fn new(namespace: &str) -> NamespaceTemplates {
        NamespaceTemplates {
            namespace: namespace.to_owned(),
            templates: BTreeMap::new(),
            file: Vec::new(),
        }
    }

    /// The same, with the `analysisTemplates` of `weir.yaml` (already
    /// validated, as [`crate::Config::analysis_templates`] holds them) also
    /// visible; a name defined in both is refused where it is used.
    pub fn with_file_templates(mut self, file: &[AnalysisTemplateSpec]) -> NamespaceTemplates {
        self.file = file.to_vec();
        self
    }

    /// Validates the AnalysisTemplate `name` of this namespace and keeps
    /// it, valid or not (a reference to an invalid one waits, saying why).
    ///
    /// # Errors
    /// The template's problems, each naming its field from `spec`.
    pub fn insert(&mut self, name: &str, spec: &serde_json::Value) -> Result<(), Vec<SpecProblem>> {
        let (spec, problems) = match validate_analysis_template(name, spec) {
            Ok(spec) => (Some(spec), Vec::new()),
            Err(problems) => (None, problems),
        };
        self.templates.insert(
            name.to_owned(),
            NamespaceTemplate {
                spec,
                problems: problems.clone(),
            },
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn catalog(&self) -> analysis_templates::Catalog {
        analysis_templates::namespace_catalog(
            &self.namespace,
            &self.file,
            self.templates.iter().map(|(name, template)| {
                let problem = (!template.problems.is_empty()).then(|| {
                    template
                        .problems
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                });
                (name.as_str(), template.spec.as_ref(), problem)
            }),
        )
    }
}

// === impl SpecProblem ===

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[cfg(test)]
mod tests;
