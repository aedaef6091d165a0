//! weir on Kubernetes (SPEC section 10): the pieces that talk to the API
//! server through `kube`.

pub mod discovery;
pub mod lease;
pub mod resource;
