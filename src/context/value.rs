//! Typed context values (Go's `context.WithValue` and `Value`, with the
//! type checked by the compiler instead of asserted at run time).
//!
//! Go keys a value by any comparable value and returns `any`; the
//! convention is an unexported key type per package so that packages
//! cannot collide. Here that convention is the rule: a key is a value of
//! a type implementing [`Key`], which names the type of the value it
//! carries, and a lookup matches on the key's type first (a `TypeId`
//! comparison, through `downcast_ref`), then on `==`. So a key type
//! private to a module cannot be matched from outside it, and a lookup
//! returns `&K::Value`, with no cast for the caller to get wrong.
//!
//! A value context is a link in the chain from a context to the
//! background: a lookup walks it from the nearest link outwards, as Go's
//! does, so the nearest value for a key wins. Values are meant for the
//! few things that cross API boundaries with a request (ids, credentials,
//! trace spans), not for passing parameters.

use std::any::Any;

/// A context key: a type whose values name context values of type
/// [`Value`](Key::Value).
///
/// ```
/// use gort::context::{Context, Key};
///
/// #[derive(PartialEq)]
/// struct RequestId;
/// impl Key for RequestId {
///     type Value = u64;
/// }
///
/// let ctx = Context::background().with_value(RequestId, 42);
/// assert_eq!(ctx.value(&RequestId), Some(&42));
/// ```
pub trait Key: Any + PartialEq + Send + Sync {
    /// The type of the value this key names.
    type Value: Any + Send + Sync;
}

/// One value context's key and value, type-erased.
pub(super) struct Entry {
    key: Box<dyn Any + Send + Sync>,
    value: Box<dyn Any + Send + Sync>,
}

impl Entry {
    pub(super) fn new<K: Key>(key: K, value: K::Value) -> Entry {
        Entry {
            key: Box::new(key),
            value: Box::new(value),
        }
    }

    /// The value, if this entry is for `key`.
    pub(super) fn get<K: Key>(&self, key: &K) -> Option<&K::Value> {
        if self.key.downcast_ref::<K>()? != key {
            return None;
        }
        self.value.downcast_ref()
    }
}
