//! The pace of requests, from their arrival times.

/// How fast requests came.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// How many.
    pub requests: usize,
    /// Per second, from the first to the last.
    pub per_second: f64,
    /// The most that arrived within any one second.
    pub busiest_second: usize,
}

/// How late a paced request may reach the server after the limiter granted
/// it: arrival times carry the client's scheduling and connection delays
/// (seen: 28 arrivals in one second against a bound of 26 at 25/s, with two
/// load tests side by side on 2 cores, both passing alone).
const DELIVERY_JITTER_SECS: f64 = 0.2;

/// The most arrivals any one second may see from a limiter with a bucket
/// of `capacity` refilled at `rate` per second: the bucket plus a second's
/// refill, plus the refill of the delivery jitter (a request granted just
/// before the second and delivered in it).
pub fn most_in_a_second(capacity: u32, rate: f64) -> usize {
    capacity as usize + (rate * (1.0 + DELIVERY_JITTER_SECS)).ceil() as usize
}

impl Pace {
    /// The pace of requests that arrived at `times_ms` (ms, ascending); at
    /// least two.
    pub fn of(times_ms: &[i64]) -> Self {
        assert!(times_ms.len() >= 2, "a pace needs two requests");
        let busiest_second = times_ms
            .iter()
            .enumerate()
            .map(|(i, &start)| {
                times_ms[i..]
                    .iter()
                    .take_while(|&&t| t < start + 1_000)
                    .count()
            })
            .max()
            .unwrap_or(0);
        let span_secs = (times_ms[times_ms.len() - 1] - times_ms[0]) as f64 / 1000.0;
        Self {
            requests: times_ms.len(),
            per_second: (times_ms.len() - 1) as f64 / span_secs,
            busiest_second,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_allows_the_bucket_a_second_and_the_jitter() {
        assert_eq!(most_in_a_second(1, 25.0), 31);
        assert_eq!(most_in_a_second(1, 20.0), 25);
    }

    #[test]
    fn rate_and_busiest_second() {
        let pace = Pace::of(&[0, 100, 200, 1_000, 1_500, 2_000]);
        assert_eq!(pace.requests, 6);
        assert!((pace.per_second - 2.5).abs() < 1e-9);
        assert_eq!(pace.busiest_second, 3);
    }
}
