//! Validation of a CanaryRoute's `spec` (SPEC section 10): the route checks
//! of `weir.yaml`, so a wrong value gets the same message in both, with
//! paths from `spec` (`spec.strategy.steps[1].pause.duration`) instead of
//! file locations.
//!
//! Pure: the spec arrives as the JSON value the API server returns.

use std::fmt;

use super::{check, structure, tree};
use crate::location::LocationIndex;
use crate::model::{Route, ServiceRef};
use crate::schema::RouteSpec;
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
}

/// One problem of a CanaryRoute's spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// The field, from `spec`: `spec.strategy.steps[1].pause.duration`.
    pub path: String,
    /// What is wrong, and what would be right (as for `weir.yaml`).
    pub message: String,
}

/// Validates the `spec` of the CanaryRoute `namespace`/`name`.
///
/// # Errors
/// Every problem found, each naming its field from `spec`: as for
/// `weir.yaml`, structural problems (unknown fields, wrong types, missing
/// fields) are reported together and stop there; otherwise every semantic
/// problem is reported.
pub fn validate_canary_route(
    namespace: &str,
    name: &str,
    spec: &serde_json::Value,
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
    let mut checker = check::Checker::for_cluster(&index);
    let checked = checker.cluster_route(&spec, &route_name);
    let diagnostics = checker.into_diagnostics();
    match checked {
        Some((route, stable_service, canary_service)) if diagnostics.is_empty() => {
            Ok(ClusterRouteSpec {
                route,
                stable_service,
                canary_service,
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

// === impl SpecProblem ===

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[cfg(test)]
mod tests;
