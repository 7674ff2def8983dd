//! Connection counting for the global `connectionLimit` (`<resource-constraint/>`) and each
//! partner's `connectionLimit` (`<conflict/>`, RFC 6120 §4.9.3.3). Slots are released when
//! their guard drops, whatever way a stream ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct ConnCounts {
    inner: Arc<Mutex<Counts>>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_partner: HashMap<String, usize>,
}

/// Holds one connection slot (global, and per partner once known).
pub struct Slot {
    inner: Arc<Mutex<Counts>>,
    partner: Option<String>,
}

impl ConnCounts {
    /// Takes a global slot, or `None` when `limit` streams are open.
    pub fn enter(&self, limit: usize) -> Option<Slot> {
        let mut c = self.inner.lock().ok()?;
        if c.total >= limit {
            return None;
        }
        c.total += 1;
        Some(Slot {
            inner: self.inner.clone(),
            partner: None,
        })
    }

    pub fn total(&self) -> usize {
        self.inner.lock().map(|c| c.total).unwrap_or(0)
    }

    pub fn partner(&self, name: &str) -> usize {
        self.inner
            .lock()
            .map(|c| c.per_partner.get(name).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

impl Slot {
    /// Counts this stream against `partner`; false (and not counted) when `limit` is reached.
    pub fn claim_partner(&mut self, partner: &str, limit: usize) -> bool {
        if self.partner.as_deref() == Some(partner) {
            return true;
        }
        let Ok(mut c) = self.inner.lock() else {
            return false;
        };
        let n = c.per_partner.entry(partner.to_string()).or_default();
        if *n >= limit {
            return false;
        }
        *n += 1;
        if let Some(old) = self.partner.replace(partner.to_string())
            && let Some(m) = c.per_partner.get_mut(&old)
        {
            *m = m.saturating_sub(1);
        }
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut c) = self.inner.lock() {
            c.total = c.total.saturating_sub(1);
            if let Some(p) = &self.partner
                && let Some(n) = c.per_partner.get_mut(p)
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.per_partner.remove(p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_and_released() {
        let counts = ConnCounts::default();
        let mut a = counts.enter(2).unwrap();
        let b = counts.enter(2).unwrap();
        assert!(counts.enter(2).is_none(), "global limit");
        assert!(a.claim_partner("p", 1));
        drop(b);
        let mut c = counts.enter(2).unwrap();
        assert!(!c.claim_partner("p", 1), "partner limit");
        drop(a);
        assert!(c.claim_partner("p", 1));
        drop(c);
        assert_eq!(counts.total(), 0);
        assert_eq!(counts.partner("p"), 0);
    }
}
