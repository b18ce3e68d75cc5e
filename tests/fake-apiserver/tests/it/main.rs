//! Tests driving the fake apiserver with the real `kube::Client` and
//! `kube::runtime` watchers, asserting what a real apiserver would answer.

mod apply;
mod common;
mod crud;
mod discovery;
mod events;
mod faults;
mod lifecycle;
mod pagination;
mod selectors;
mod status;
mod watcher;
