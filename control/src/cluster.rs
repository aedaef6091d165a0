//! weir on Kubernetes (SPEC section 10): the pieces that talk to the API
//! server through `kube`, and the counters shared between replicas.

pub mod conditions;
pub mod counters;
pub mod discovery;
pub mod events;
pub mod gateway_api;
pub mod gateway_routes;
pub mod gateway_status;
pub mod lease;
#[cfg(test)]
mod mock_api;
pub mod peers;
pub mod resource;
pub mod runtime;
pub mod status_codec;
pub mod status_store;
