//! gRPC status codes: their names, and the set of codes that count as
//! errors of a role for the analysis (`analysis.grpcErrorCodes`).

use std::fmt;

/// The gRPC status names, indexed by code (0 to 16), as the gRPC spec and
/// the `grpc_code` metric label spell them.
pub const GRPC_CODE_NAMES: [&str; GRPC_CODES] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// How many gRPC status codes there are (0 to 16).
pub const GRPC_CODES: usize = 17;

/// `grpc-status` 1.
pub const GRPC_CANCELLED: u8 = 1;
/// `grpc-status` 2.
pub const GRPC_UNKNOWN: u8 = 2;
/// `grpc-status` 4.
pub const GRPC_DEADLINE_EXCEEDED: u8 = 4;

/// A set of gRPC status codes, one bit per code.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrpcCodeSet(u32);

// === impl GrpcCodeSet ===

impl GrpcCodeSet {
    /// No code.
    pub const EMPTY: GrpcCodeSet = GrpcCodeSet(0);

    /// The codes that count as errors unless `grpcErrorCodes` says
    /// otherwise: UNKNOWN, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE and
    /// DATA_LOSS (the server's or the network's fault, not the caller's).
    pub const DEFAULT_ERRORS: GrpcCodeSet =
        GrpcCodeSet((1 << 2) | (1 << 4) | (1 << 13) | (1 << 14) | (1 << 15));

    /// The set with `code` added; codes above 16 are ignored.
    #[must_use]
    pub const fn with(self, code: u8) -> GrpcCodeSet {
        if (code as usize) < GRPC_CODES {
            GrpcCodeSet(self.0 | (1 << code))
        } else {
            self
        }
    }

    /// Whether `code` is in the set.
    pub const fn contains(self, code: u8) -> bool {
        (code as usize) < GRPC_CODES && self.0 & (1 << code) != 0
    }

    /// Whether a call answered with gRPC status `status` is in the set: a
    /// status past 16, which clients read as UNKNOWN, counts as UNKNOWN.
    pub const fn contains_status(self, status: u8) -> bool {
        if (status as usize) < GRPC_CODES {
            self.contains(status)
        } else {
            self.contains(GRPC_UNKNOWN)
        }
    }

    /// The codes in the set, ascending.
    pub fn codes(self) -> impl Iterator<Item = u8> {
        (0..GRPC_CODES as u8).filter(move |&code| self.contains(code))
    }
}

impl Default for GrpcCodeSet {
    fn default() -> Self {
        GrpcCodeSet::DEFAULT_ERRORS
    }
}

impl fmt::Debug for GrpcCodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.codes().map(|c| GRPC_CODE_NAMES[usize::from(c)]))
            .finish()
    }
}

/// The code of a gRPC status name, in any case (`unavailable`, `UNAVAILABLE`).
pub fn grpc_code_by_name(name: &str) -> Option<u8> {
    GRPC_CODE_NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .and_then(|i| u8::try_from(i).ok())
}

/// The name of a gRPC status code; `None` above 16.
pub fn grpc_code_name(code: u8) -> Option<&'static str> {
    GRPC_CODE_NAMES.get(usize::from(code)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_error_codes_are_the_servers_faults() {
        let names: Vec<&str> = GrpcCodeSet::DEFAULT_ERRORS
            .codes()
            .map(|c| GRPC_CODE_NAMES[usize::from(c)])
            .collect();
        assert_eq!(
            names,
            [
                "UNKNOWN",
                "DEADLINE_EXCEEDED",
                "INTERNAL",
                "UNAVAILABLE",
                "DATA_LOSS"
            ]
        );
        assert_eq!(grpc_code_by_name("unavailable"), Some(14));
        assert_eq!(grpc_code_by_name("UNAUTHENTICATED"), Some(16));
        assert_eq!(grpc_code_by_name("NOPE"), None);
        assert!(!GrpcCodeSet::EMPTY.with(17).contains(17));
    }

    #[test]
    fn a_status_past_16_is_judged_as_unknown() {
        assert!(GrpcCodeSet::DEFAULT_ERRORS.contains_status(42));
        assert!(GrpcCodeSet::DEFAULT_ERRORS.contains_status(255));
        assert!(!GrpcCodeSet::DEFAULT_ERRORS.contains_status(5));
        let without_unknown = GrpcCodeSet::EMPTY.with(14);
        assert!(!without_unknown.contains_status(42));
        assert!(without_unknown.contains_status(14));
    }
}
