//! A slot of the whole stack as [`decide`](super::decide) sees it: every component's
//! Deployment in that slot, aggregated. The single-template form is a stack of one, so these
//! rules are exactly the per-Deployment rules there.

use crate::blue_green::observe::{Cluster, Slot, SlotView};

use super::settings::{Settings, Size};

/// One slot of every component.
pub struct StackSlot<'a> {
    cluster: &'a Cluster,
    settings: &'a Settings,
    slot: Slot,
}

impl<'a> StackSlot<'a> {
    /// `slot` of every component of `settings`.
    pub fn new(cluster: &'a Cluster, settings: &'a Settings, slot: Slot) -> Self {
        Self {
            cluster,
            settings,
            slot,
        }
    }

    /// Each component's view of the slot, with its index.
    fn views(&self) -> impl Iterator<Item = (usize, &'a SlotView)> + '_ {
        (0..self.settings.units()).map(|i| (i, self.cluster.component(i).slot(self.slot)))
    }

    /// Every component's Deployment exists.
    pub fn exists(&self) -> bool {
        self.views().all(|(_, v)| v.exists)
    }

    /// Every component's Deployment exists and was made from `revision`.
    pub fn holds(&self, revision: &str) -> bool {
        self.views().all(|(_, v)| v.holds(revision))
    }

    /// Every component's Deployment is fully rolled out.
    pub fn available(&self) -> bool {
        self.views().all(|(_, v)| v.available)
    }

    /// The revision every component's Deployment holds, if they all exist and agree.
    pub fn revision(&self) -> Option<&'a str> {
        let mut common: Option<&str> = None;
        for (_, view) in self.views() {
            let revision = view.revision.as_deref().filter(|_| view.exists)?;
            if common.is_some_and(|c| c != revision) {
                return None;
            }
            common = Some(revision);
        }
        common
    }

    /// Some component's Deployment holds a revision of this release.
    pub fn has_revision(&self) -> bool {
        self.views().any(|(_, v)| v.revision.is_some())
    }

    /// Every component is at `size` (a missing Deployment counts as 0 replicas).
    pub fn sized(&self, size: Size) -> bool {
        self.views()
            .all(|(i, v)| v.spec_replicas == self.settings.count(size, i))
    }

    /// Every component is at one of `sizes`, each its own.
    pub fn sized_any(&self, sizes: &[Size]) -> bool {
        self.views().all(|(i, v)| {
            sizes
                .iter()
                .any(|size| v.spec_replicas == self.settings.count(*size, i))
        })
    }

    /// Some component's Deployment exists and is not at `size`.
    pub fn exists_not_sized(&self, size: Size) -> bool {
        self.views()
            .any(|(i, v)| v.exists && v.spec_replicas != self.settings.count(size, i))
    }

    /// Some component is below `size`.
    pub fn below(&self, size: Size) -> bool {
        self.views()
            .any(|(i, v)| v.spec_replicas < self.settings.count(size, i))
    }

    /// Some component's Deployment exists, holds something else than `revision`, and has
    /// replicas: pods that may still get traffic.
    pub fn runs_other(&self, revision: &str) -> bool {
        self.views()
            .any(|(_, v)| v.exists && !v.holds(revision) && v.spec_replicas > 0)
    }

    /// Every component's active Service may be pointed at this slot: its Deployment exists
    /// and has ready pods (or the component wants none).
    pub fn can_select(&self) -> bool {
        self.views().all(|(i, v)| {
            v.exists && (v.ready_replicas > 0 || self.settings.count(Size::Full, i) == 0)
        })
    }

    /// Every component's active Service's endpoints are only ready endpoints of this slot (none
    /// at all is accepted for a component that wants 0 replicas).
    pub fn endpoints_converged(&self) -> bool {
        (0..self.settings.units()).all(|i| {
            self.cluster
                .component(i)
                .endpoints
                .only(self.slot, self.settings.count(Size::Full, i) == 0)
        })
    }
}

/// The slot every component's active Service names; `None` when one names none or they
/// disagree (no common slot).
pub fn service_slot(cluster: &Cluster, settings: &Settings) -> Option<Slot> {
    common((0..settings.units()).map(|i| cluster.component(i).service_slot))
}

/// The slot every preview Service names (components without one are skipped); `None` when one
/// names none or they disagree.
pub fn preview_slot(cluster: &Cluster, settings: &Settings) -> Option<Slot> {
    common(
        (0..settings.units())
            .filter(|i| settings.previews.get(*i).copied().unwrap_or(false))
            .map(|i| cluster.component(i).preview_service_slot),
    )
}

/// The one value all of `slots` have (`None` if one is `None`, they differ, or there are none).
pub fn common(mut slots: impl Iterator<Item = Option<Slot>>) -> Option<Slot> {
    let first = slots.next()??;
    slots.all(|s| s == Some(first)).then_some(first)
}

#[cfg(test)]
mod tests;
