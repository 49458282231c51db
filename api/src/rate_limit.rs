//! A token-bucket rate limit per token subject, so one busy client cannot starve the rest;
//! callers over it get 429 with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets of `burst` requests, refilled at `rate` per second, one per subject.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter; `rate` 0 lets everything through.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self { rate, burst: burst.max(1.0), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request from `subject`'s bucket; when it is empty, how long until it is not.
    pub fn check(&self, subject: &str) -> Result<(), Duration> {
        self.check_at(subject, Instant::now())
    }

    fn check_at(&self, subject: &str, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        let (tokens, last) = buckets.entry(subject.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_holds_per_subject() {
        let limiter = RateLimiter::new(2.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("ada", t0).is_ok());
        }
        let wait = limiter.check_at("ada", t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        assert!(limiter.check_at("bob", t0).is_ok(), "another subject has its own bucket");
        assert!(limiter.check_at("ada", t0 + Duration::from_millis(500)).is_ok());
        assert!(limiter.check_at("ada", t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn rate_zero_is_no_limit() {
        let limiter = RateLimiter::new(0.0, 1.0);
        assert!((0..1000).all(|_| limiter.check("ada").is_ok()));
    }
}
