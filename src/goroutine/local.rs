//! Goroutine-local storage: `gort::local!`, the goroutine counterpart of
//! `thread_local!`.
//!
//! A goroutine may move to another OS thread at any runtime call (the
//! migration rule, DESIGN.md §3), so a `thread_local!` value seen before a
//! channel operation may not be the one seen after it. A `gort::local!`
//! value belongs to the goroutine instead: each G carries a small map from
//! key index to boxed value, created on first use, and dropped when the
//! goroutine's body has returned — on the goroutine's own stack, before its
//! result is handed to `join`, so a joiner observes the drops. On a plain
//! OS thread (not a goroutine) the same key falls back to a per-thread map.
//!
//! Values are boxed, so a reference handed to `with` stays valid even if
//! the closure initialises other keys (which may grow the map) or parks and
//! resumes on another thread. Values need not be `Send`: only their
//! goroutine ever touches them, one step at a time, wherever it runs.

use std::any::Any;
use std::cell::{RefCell, UnsafeCell};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sched::current_m;

/// One goroutine's (or thread's) values, indexed by key.
#[derive(Default)]
pub(crate) struct LocalMap {
    slots: Vec<Option<Box<dyn Any>>>,
    /// The runtime's own per-goroutine value: `block_on`'s reusable waker
    /// state (`future.rs`), kept here rather than in the G, which has no
    /// byte to spare, and dropped with the goroutine like the user's values.
    pub(crate) future_signal: Option<crate::future::CachedSignal>,
}

thread_local! {
    static THREAD_MAP: RefCell<Option<Box<LocalMap>>> = const { RefCell::new(None) };
}

/// Hands out key indices, starting at 0.
static NEXT_INDEX: AtomicUsize = AtomicUsize::new(0);

/// A key for goroutine-local values, made by [`local!`](crate::local).
pub struct LocalKey<T: 'static> {
    init: fn() -> T,
    /// Index + 1 once assigned; 0 before first use.
    index: AtomicUsize,
    _value: PhantomData<fn() -> T>,
}

impl<T: 'static> LocalKey<T> {
    #[doc(hidden)]
    pub const fn new(init: fn() -> T) -> LocalKey<T> {
        LocalKey {
            init,
            index: AtomicUsize::new(0),
            _value: PhantomData,
        }
    }

    fn index(&self) -> usize {
        match self.index.load(Ordering::Relaxed) {
            0 => {
                let fresh = NEXT_INDEX.fetch_add(1, Ordering::Relaxed) + 1;
                match self
                    .index
                    .compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed)
                {
                    Ok(_) => fresh - 1,
                    Err(won) => won - 1,
                }
            }
            i => i - 1,
        }
    }

    /// Run `f` with this goroutine's value (initialised on first use).
    ///
    /// ```
    /// use std::cell::Cell;
    /// gort::local! { static HITS: Cell<u32> = Cell::new(0); }
    /// let n = gort::go(|| {
    ///     HITS.with(|h| h.set(h.get() + 1));
    ///     HITS.with(|h| h.get())
    /// });
    /// assert_eq!(n.join().unwrap(), 1);
    /// HITS.with(|h| assert_eq!(h.get(), 0)); // this thread has its own value
    /// ```
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        let index = self.index();
        let value = with_map(|map| map.slots.get(index).and_then(Option::as_ref).map(|b| value_ptr::<T>(b)));
        let value = match value {
            Some(v) => v,
            None => {
                // Initialise without holding the map: `init` may use other keys.
                let fresh: Box<dyn Any> = Box::new((self.init)());
                with_map(|map| {
                    if map.slots.len() <= index {
                        map.slots.resize_with(index + 1, || None);
                    }
                    value_ptr::<T>(map.slots[index].get_or_insert(fresh))
                })
            }
        };
        // SAFETY: the value is boxed and stays in the map until the map is
        // dropped, which happens only after the goroutine's body (and so
        // this call) has returned, or when its thread exits.
        f(unsafe { &*value })
    }
}

fn value_ptr<T: 'static>(b: &Box<dyn Any>) -> *const T {
    b.downcast_ref::<T>().expect("goroutine-local slot holds another type") as *const T
}

/// Run `f` on the calling goroutine's map, or the thread's. `f` must not
/// call back into `with_map`.
pub(crate) fn with_map<R>(f: impl FnOnce(&mut LocalMap) -> R) -> R {
    match current_m().and_then(|m| m.curg.get()) {
        Some(g) => {
            let slot: &UnsafeCell<Option<Box<LocalMap>>> = &g.locals;
            // SAFETY: only the running goroutine touches its own `locals`,
            // and `f` does not call back into `with_map`.
            f(unsafe { &mut *slot.get() }.get_or_insert_with(Box::default))
        }
        None => THREAD_MAP.with(|m| f(m.borrow_mut().get_or_insert_with(Box::default))),
    }
}

/// Drop the calling goroutine's values. Destructors that touch other keys
/// re-create the map; it is dropped again, a bounded number of times, and
/// whatever is still re-created after that is leaked. Either way the G
/// leaves with no map, so the next goroutine to run on it starts fresh.
/// A panicking destructor does not stop the rounds; the first panic is
/// returned.
pub(crate) fn drop_goroutine_locals() -> std::thread::Result<()> {
    let Some(g) = current_m().and_then(|m| m.curg.get()) else {
        return Ok(());
    };
    let mut result = Ok(());
    for _ in 0..8 {
        // SAFETY: as in `with_map`; the map is moved out before its values
        // are dropped, so a destructor using a key finds a fresh map.
        let Some(map) = (unsafe { (*g.locals.get()).take() }) else {
            return result;
        };
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| drop(map)))
            && result.is_ok()
        {
            result = Err(e);
        }
    }
    // SAFETY: as above.
    std::mem::forget(unsafe { (*g.locals.get()).take() });
    result
}

/// Declare goroutine-local values, with `thread_local!`'s syntax.
///
/// ```
/// use std::cell::RefCell;
/// gort::local! {
///     static NAME: RefCell<String> = RefCell::new(String::new());
///     pub static DEPTH: std::cell::Cell<u32> = std::cell::Cell::new(0);
/// }
/// gort::go(|| NAME.with(|n| n.borrow_mut().push_str("mine"))).join().unwrap();
/// NAME.with(|n| assert!(n.borrow().is_empty()));
/// ```
#[macro_export]
macro_rules! local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        $(#[$attr])* $vis static $name: $crate::goroutine::LocalKey<$t> = $crate::goroutine::LocalKey::new({
            fn init() -> $t {
                $init
            }
            init
        });
        $crate::local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr) => {
        $crate::local!($(#[$attr])* $vis static $name: $t = $init;);
    };
}
