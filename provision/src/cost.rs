//! The monthly cost estimate shown before a deploy.
//!
//! Prices are Fly's, as used by Fly's own calculator (superfly/flyio-price-calc-ex
//! `lib/flyio_price_calc/price.ex`, 2024-10) and the pricing page (superfly/docs
//! `about/pricing.html.markerb`, 2026-08): see docs/fly-machines-api.md §9.
//! Base-price regions; some regions cost more.

use crate::spec::DeploymentSpec;
use serde::{Deserialize, Serialize};

/// `3.3216` → `3.32`: dollars to the cent, as the page and the CLI show a cost. Whole cents
/// by integer arithmetic rather than `{:.2}`, which would pull float formatting (about 10 KB)
/// into the page's wasm.
pub fn dollars(usd: f64) -> String {
    let (sign, cents) = cents(usd);
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

/// `10`, `12.5`, `12.25`: dollars as a person types an amount (the daily cap), and as the vm
/// reads `MAX_DAILY_USD`: no trailing zeros.
pub fn dollars_typed(usd: f64) -> String {
    let (sign, cents) = cents(usd);
    match cents % 100 {
        0 => format!("{sign}{}", cents / 100),
        c if c % 10 == 0 => format!("{sign}{}.{}", cents / 100, c / 10),
        c => format!("{sign}{}.{c:02}", cents / 100),
    }
}

/// The sign and the whole cents of an amount, rounded.
fn cents(usd: f64) -> (&'static str, u64) {
    let cents = (usd * 100.0).round();
    (if cents < 0.0 { "-" } else { "" }, cents.abs() as u64)
}

/// One shared vCPU for 30 days of running.
pub const SHARED_CPU_PER_MONTH: f64 = 0.695;
/// One performance vCPU for 30 days of running (Fly's calculator).
pub const PERFORMANCE_CPU_PER_MONTH: f64 = 21.52;
/// One GB of RAM for 30 days of running.
pub const RAM_GB_PER_MONTH: f64 = 5.0;
/// One GB of provisioned volume for a month, whether used or not.
pub const VOLUME_GB_PER_MONTH: f64 = 0.15;
/// One GB of a stopped machine's root filesystem for 30 days.
pub const ROOTFS_GB_PER_MONTH: f64 = 0.15;
/// Assumed size of the vm image's root filesystem (Node, Claude Code, Chromium).
pub const VM_ROOTFS_GB: f64 = 2.0;

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Estimate {
    pub relay: f64,
    pub vm_running: f64,
    pub vm_stopped: f64,
    /// Both volumes: the vm's workspace and the relay's journal.
    pub volume: f64,
    pub total: f64,
    pub vm_hours_per_day: f64,
}

fn running_per_month(guest: &crate::fly::Guest) -> f64 {
    let cpu = if guest.cpu_kind == "performance" {
        PERFORMANCE_CPU_PER_MONTH
    } else {
        SHARED_CPU_PER_MONTH
    };
    cpu * f64::from(guest.cpus) + RAM_GB_PER_MONTH * f64::from(guest.memory_mb) / 1024.0
}

/// Dollars per month if the vm runs `vm_hours_per_day` on average (it stops itself when idle).
pub fn estimate(spec: &DeploymentSpec, vm_hours_per_day: f64) -> Estimate {
    let share = (vm_hours_per_day / 24.0).clamp(0.0, 1.0);
    let relay = running_per_month(&spec.relay_guest);
    let vm_running = running_per_month(&spec.vm_guest) * share;
    let vm_stopped = ROOTFS_GB_PER_MONTH * VM_ROOTFS_GB * (1.0 - share);
    let volume = VOLUME_GB_PER_MONTH * f64::from(spec.volume_gb + crate::machines::RELAY_VOLUME_GB);
    let round = |x: f64| (x * 100.0).round() / 100.0;
    Estimate {
        relay: round(relay),
        vm_running: round(vm_running),
        vm_stopped: round(vm_stopped),
        volume: round(volume),
        total: round(relay + vm_running + vm_stopped + volume),
        vm_hours_per_day,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dollars_are_written_to_the_cent_and_as_typed() {
        use super::{dollars, dollars_typed};
        assert_eq!(dollars(3.3216), "3.32");
        assert_eq!(dollars(10.0), "10.00");
        assert_eq!(dollars(0.695), "0.70");
        assert_eq!(dollars(-1.5), "-1.50");
        assert_eq!(dollars_typed(10.0), "10");
        assert_eq!(dollars_typed(12.5), "12.5");
        assert_eq!(dollars_typed(12.25), "12.25");
        assert_eq!(dollars_typed(0.0), "0");
        assert_eq!(dollars_typed(-0.001), "0");
        assert_eq!(dollars_typed(-1.5), "-1.5");
    }

    use super::*;
    use crate::spec::tests::telegram_spec;

    #[test]
    fn relay_matches_fly_calculator_figure() {
        // shared-cpu-1x with 256 MB: "~$1.94/month".
        let e = estimate(&telegram_spec("c"), 0.0);
        assert_eq!(e.relay, 1.94);
        assert_eq!(e.vm_running, 0.0);
        // Plus the stopped vm's 2 GB root filesystem and the two 1 GB volumes.
        assert_eq!(e.volume, 0.3);
        assert_eq!(e.total, 2.54);
    }

    #[test]
    fn vm_cost_grows_with_use() {
        let spec = telegram_spec("c");
        assert!(estimate(&spec, 8.0).total > estimate(&spec, 1.0).total);
        // Always on, shared-cpu-2x 2 GB: 2 × 0.695 + 2 × 5.
        assert_eq!(estimate(&spec, 24.0).vm_running, 11.39);
    }
}
