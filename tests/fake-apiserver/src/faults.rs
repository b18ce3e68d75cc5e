//! Fault injection behind [`crate::FakeApiServer::fail_next`].

use std::sync::Mutex;

use crate::status::ApiError;

#[derive(Clone, Debug)]
struct Fault {
    method: String,
    path_contains: String,
    status: u16,
    remaining: usize,
}

/// Pending injected failures, consumed first-registered first.
#[derive(Debug, Default)]
pub struct Faults(Mutex<Vec<Fault>>);

impl Faults {
    /// Registers a failure for the next `times` requests with this method
    /// (`"*"` for any) whose `path?query` contains `path_contains`.
    pub fn add(&self, method: &str, path_contains: &str, status: u16, times: usize) {
        if times == 0 {
            return;
        }
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Fault {
                method: method.to_ascii_uppercase(),
                path_contains: path_contains.to_string(),
                status,
                remaining: times,
            });
    }

    /// If a registered failure matches, consumes one use of it and returns the error to answer with.
    pub fn take(&self, method: &str, path_and_query: &str) -> Option<ApiError> {
        let mut faults = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let i = faults.iter().position(|f| {
            (f.method == "*" || f.method.eq_ignore_ascii_case(method))
                && path_and_query.contains(&f.path_contains)
        })?;
        let status = faults[i].status;
        faults[i].remaining -= 1;
        if faults[i].remaining == 0 {
            faults.remove(i);
        }
        Some(ApiError::Injected {
            code: status,
            message: format!("injected failure ({status}) for {method} {path_and_query}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_consumed() {
        let f = Faults::default();
        f.add("get", "/services/a", 503, 2);
        assert!(f.take("POST", "/api/v1/namespaces/x/services/a").is_none());
        assert_eq!(
            f.take("GET", "/api/v1/namespaces/x/services/a")
                .unwrap()
                .code(),
            503
        );
        assert!(f.take("GET", "/api/v1/namespaces/x/services/a").is_some());
        assert!(f.take("GET", "/api/v1/namespaces/x/services/a").is_none());
    }
}
