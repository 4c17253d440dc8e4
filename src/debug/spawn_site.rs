//! Which function spawned a goroutine: the name on a dump's `created by`
//! line (Go's `created by main.main in goroutine 1`).
//!
//! A spawn records only the `#[track_caller]` `Location` of the `go` call
//! (file, line, column: one pointer stored in the G), because spawning is a
//! hot path and must not pay for a stack walk or a symbol lookup on behalf
//! of a dump that may never be taken. The function is found afterwards, at
//! dump time, by reading that location backwards through the executable's
//! own debug info:
//!
//! 1. Find code at the spawn site. Only compilation units whose line table
//!    names the spawn site's file are read, the file matched by path suffix
//!    on a `/` boundary: a `Location` carries the path rustc was given
//!    (`src/main.rs`, relative to where cargo ran it) while the tables hold
//!    it joined with the unit's compilation directory. Two kinds of entries
//!    are at the site's line: line rows (the call instruction of a `go`
//!    call that was not inlined) and inlined calls made there (their
//!    `DW_AT_call_file`/`call_line`), because an inlined `go(..)` may leave
//!    no row at its call site at all, every instruction being the callee's.
//! 2. Symbolize each such address with its inlined calls (`addr2line`),
//!    innermost first. The frame whose own location is the spawn site is
//!    the function the `go(..)` call is written in: the caller itself at
//!    its call instruction, the caller's frame around an inlined
//!    `gort::go`, or a function that was itself inlined into another one.
//!    Code of another function can sit on the same line, typically the
//!    goroutine's own closure (`go(move || rx.recv())`), so a frame scores
//!    higher when its column is the spawn site's too and when the call
//!    inlined at it is gort's; of equal scores the shortest name wins, the
//!    function enclosing closures written on that line. A spawn written
//!    inside a closure names the closure (`demo::main::{{closure}}`), as Go
//!    names `main.main.func1`.
//!
//! Names are demangled without their hash, as `symbols.rs` prints a dump's
//! frames. The debug info is read from a read-only mapping of
//! `/proc/self/exe` (the running file, even if its path was replaced since,
//! mapped once), when a dump needs a name it has not looked up before, and
//! parsed state is kept only until the dump's symbol session ends
//! (`symbols::Session`): then it is dropped and the mapping's pages leave
//! the resident set. Each spawn site is looked up once and its answer,
//! found or not, cached for the rest of the process (a program has
//! finitely many spawn sites, so the cache and the names it leaks are
//! bounded). Without debug info (a stripped binary, compressed
//! debug sections, which this reader does not inflate) or for a spawn site
//! outside the executable (a shared library), there is no name and the
//! dump says `gort::go`, as it did before names were looked up.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::panic::Location;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock, PoisonError};

use addr2line::gimli;
use object::{Object, ObjectSection};

use super::symbols::{Session, owning_crate};

type Slice = gimli::EndianSlice<'static, gimli::RunTimeEndian>;

/// Addresses at the spawn site's line that are symbolized at most: a line
/// is a handful of rows, more only for a long expression or a macro.
const MAX_ADDRESSES: usize = 64;

/// The name of the function the `go(..)` call at `site` is written in, if
/// the executable's debug info says; a site not asked about before reads
/// the debug info, which stays loaded until the symbol session ends.
pub(crate) fn spawning_function(site: &'static Location<'static>) -> Option<&'static str> {
    if let Some(&name) = resolver().names.get(site) {
        return name;
    }
    // Begun before the resolver is locked, so it ends after it is unlocked
    // (the lock order of `symbols::Session`).
    let _session = Session::begin();
    let mut resolver = resolver();
    if let Some(&name) = resolver.names.get(site) {
        return name;
    }
    let Resolver { debug, files, names } = &mut *resolver;
    let debug = debug.get_or_insert_with(|| {
        Session::note_parsed();
        DebugInfo::load()
    });
    let name = debug.as_ref().and_then(|debug| {
        let spots = files.entry(site.file()).or_insert_with(|| debug.spots_in(site.file()));
        debug.function_at(site, spots)
    });
    let name = name.map(|name| &*Box::leak(name.into_boxed_str()));
    names.insert(site, name);
    name
}

/// Drop the parsed debug info and the scans of files, and let the pages of
/// the executable they read leave the resident set; the answers stay. Called
/// when the last symbol session ends (`symbols::Session`).
pub(crate) fn release() {
    let mut resolver = resolver();
    resolver.debug = None;
    resolver.files = HashMap::new();
    if let Some(Some(image)) = IMAGE.get() {
        // SAFETY: `image` is our own read-only private file mapping, never
        // written: dropping its pages loses nothing, the next read faults
        // them back in from the file. Nothing borrows them meanwhile: the
        // parsed debug info that did is gone.
        unsafe { libc::madvise(image.as_ptr().cast_mut().cast(), image.len(), libc::MADV_DONTNEED) };
    }
}

fn resolver() -> MutexGuard<'static, Resolver> {
    static RESOLVER: LazyLock<Mutex<Resolver>> = LazyLock::new(|| {
        Mutex::new(Resolver {
            debug: None,
            files: HashMap::new(),
            names: HashMap::new(),
        })
    });
    RESOLVER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running executable, mapped once (`map_own_executable`).
static IMAGE: OnceLock<Option<&'static [u8]>> = OnceLock::new();

struct Resolver {
    /// Loaded in a symbol session (`None` outside one); `Some(None)` when
    /// the executable has no usable debug info.
    debug: Option<Option<DebugInfo>>,
    /// The code spots of each source file a spawn site was looked up in,
    /// so the debug info is scanned once per file and session, not once
    /// per site.
    files: HashMap<&'static str, Vec<Spot>>,
    /// Answers so far, by spawn site (compared by file, line and column),
    /// kept for the rest of the process.
    names: HashMap<&'static Location<'static>, Option<&'static str>>,
}

/// A code address attributed to a line and column of one source file:
/// by a line row, or as the first address of a call inlined there.
struct Spot {
    line: u64,
    /// 0 when the debug info gives none.
    column: u64,
    address: u64,
}

/// The executable's DWARF: `dwarf` for the scans of line tables and
/// inlined calls, `context` (which parses units lazily and keeps them) for
/// frames.
struct DebugInfo {
    dwarf: Arc<gimli::Dwarf<Slice>>,
    context: addr2line::Context<Slice>,
}

impl DebugInfo {
    fn load() -> Option<DebugInfo> {
        let image = (*IMAGE.get_or_init(map_own_executable))?;
        let file = object::File::parse(image).ok()?;
        file.section_by_name(".debug_line")?;
        let endian = if file.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let dwarf = gimli::Dwarf::load(|id| -> Result<Slice, ()> {
            let data = match file.section_by_name(id.name()) {
                Some(section) => {
                    let compressed = section
                        .compressed_file_range()
                        .map_or(true, |range| range.format != object::CompressionFormat::None);
                    if compressed {
                        return Err(());
                    }
                    section.data().map_err(drop)?
                }
                None => &[],
            };
            Ok(gimli::EndianSlice::new(data, endian))
        })
        .ok()?;
        let dwarf = Arc::new(dwarf);
        let context = addr2line::Context::from_arc_dwarf(Arc::clone(&dwarf)).ok()?;
        Some(DebugInfo { dwarf, context })
    }

    /// The best-scoring name among the frames at the spawn site's line; of
    /// equal scores the shortest, the enclosing function of closures
    /// written on that line.
    fn function_at(&self, site: &Location<'_>, spots: &[Spot]) -> Option<String> {
        let (line, column) = (u64::from(site.line()), u64::from(site.column()));
        let at_line = || spots.iter().filter(|s| s.line == line);
        let exact = at_line().filter(|s| s.column == column);
        let mut seen = HashSet::new();
        let addresses = exact
            .chain(at_line())
            .map(|s| s.address)
            .filter(|&a| seen.insert(a))
            .take(MAX_ADDRESSES);
        let mut best: Option<(u32, String)> = None;
        for address in addresses {
            if let Some((score, name)) = self.caller_at(address, site)
                && best
                    .as_ref()
                    .is_none_or(|(top, other)| (score, other.len()) > (*top, name.len()))
            {
                best = Some((score, name));
            }
        }
        best.map(|(_, name)| name)
    }

    /// Every spot of `file` (a `Location`'s path) in the executable: the
    /// line rows (a call instruction, for a `go` call that was not inlined)
    /// and the first address of every call inlined there, since an inlined
    /// `go(..)` may leave no row at its call site at all, every instruction
    /// being the callee's. Only units whose file table names `file` are
    /// read past their headers.
    fn spots_in(&self, file: &str) -> Vec<Spot> {
        let mut spots = Vec::new();
        let mut headers = self.dwarf.units();
        while let Ok(Some(header)) = headers.next() {
            let Ok(unit) = self.dwarf.unit(header) else {
                continue;
            };
            let Some(program) = unit.line_program.clone() else {
                continue;
            };
            let lines = program.header();
            let matching: Vec<bool> = lines
                .file_names()
                .iter()
                .map(|entry| file_path(&self.dwarf, &unit, lines, entry).is_some_and(|p| same_file(&p, file)))
                .collect();
            if !matching.contains(&true) {
                continue;
            }
            // File indexes count from 1 before DWARF 5, from 0 since.
            let first_index = u64::from(lines.version() < 5);
            let is_file = |index: u64| {
                let index = index.checked_sub(first_index).and_then(|i| usize::try_from(i).ok());
                index.is_some_and(|i| matching.get(i) == Some(&true))
            };
            let mut rows = program.rows();
            while let Ok(Some((_, row))) = rows.next_row() {
                if let Some(line) = row.line()
                    && !row.end_sequence()
                    && is_file(row.file_index())
                {
                    let column = match row.column() {
                        gimli::ColumnType::Column(c) => c.get(),
                        gimli::ColumnType::LeftEdge => 0,
                    };
                    spots.push(Spot {
                        line: line.get(),
                        column,
                        address: row.address(),
                    });
                }
            }
            // A malformed unit keeps the spots found before the error.
            let _ = self.inlined_calls(&unit, &is_file, &mut spots);
        }
        spots
    }

    /// Add a spot for every call inlined in `file` in `unit`, reading only
    /// the attributes of inlined-call entries.
    fn inlined_calls(
        &self,
        unit: &gimli::Unit<Slice>,
        is_file: &dyn Fn(u64) -> bool,
        spots: &mut Vec<Spot>,
    ) -> gimli::Result<()> {
        let mut entries = unit.entries_raw(None)?;
        let mut attrs = Vec::new();
        while !entries.is_empty() {
            let Some(abbrev) = entries.read_abbreviation()? else {
                continue;
            };
            if abbrev.tag() != gimli::DW_TAG_inlined_subroutine {
                entries.skip_attributes(abbrev.attributes())?;
                continue;
            }
            entries.read_attributes(abbrev.attributes(), &mut attrs)?;
            let (mut line, mut file, mut column, mut address) = (None, None, 0, None);
            for attr in &attrs {
                match attr.name() {
                    gimli::DW_AT_call_line => line = attr.udata_value(),
                    gimli::DW_AT_call_column => column = attr.udata_value().unwrap_or(0),
                    gimli::DW_AT_call_file => {
                        file = match attr.value() {
                            gimli::AttributeValue::FileIndex(index) => Some(index),
                            value => value.udata_value(),
                        }
                    }
                    gimli::DW_AT_low_pc => address = self.dwarf.attr_address(unit, attr.value())?,
                    gimli::DW_AT_ranges => {
                        if let Some(mut ranges) = self.dwarf.attr_ranges(unit, attr.value())? {
                            while let Some(range) = ranges.next()? {
                                if range.begin < range.end {
                                    address = Some(range.begin);
                                    break;
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            if let (Some(line), Some(address)) = (line, address)
                && file.is_some_and(is_file)
            {
                spots.push(Spot { line, column, address });
            }
        }
        Ok(())
    }

    /// The function whose frame at `address` is located at the spawn site,
    /// scored: 2 if the frame's column is the site's, plus 1 if the call
    /// inlined at it is gort's (`gort::go` itself, inlined).
    fn caller_at(&self, address: u64, site: &Location<'_>) -> Option<(u32, String)> {
        let mut frames = self.context.find_frames(address).skip_all_loads().ok()?;
        let mut callee_is_gort = false;
        while let Ok(Some(frame)) = frames.next() {
            let name = frame.function.as_ref().and_then(|f| f.raw_name().ok());
            let name = name.map(|raw| format!("{:#}", rustc_demangle::demangle(&raw)));
            if let Some(at) = &frame.location
                && at.line == Some(site.line())
                && at.file.is_some_and(|file| same_file(file, site.file()))
            {
                let score = 2 * u32::from(at.column == Some(site.column())) + u32::from(callee_is_gort);
                return Some((score, name?));
            }
            callee_is_gort = name.as_deref().is_some_and(|n| owning_crate(n) == "gort");
        }
        None
    }
}

/// A line-table file entry's path: as written if absolute, else joined
/// with its directory, and that with the unit's compilation directory.
fn file_path(
    dwarf: &gimli::Dwarf<Slice>,
    unit: &gimli::Unit<Slice>,
    header: &gimli::LineProgramHeader<Slice>,
    entry: &gimli::FileEntry<Slice>,
) -> Option<String> {
    let text = |value| {
        dwarf
            .attr_string(unit, value)
            .ok()
            .map(|s| s.to_string_lossy().into_owned())
    };
    let name = text(entry.path_name())?;
    if name.starts_with('/') {
        return Some(name);
    }
    let mut path = match entry.directory(header).and_then(text) {
        Some(dir) if dir.starts_with('/') => dir,
        dir => {
            let comp_dir = unit
                .comp_dir
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            match dir {
                Some(dir) if !dir.is_empty() => format!("{comp_dir}/{dir}"),
                _ => comp_dir,
            }
        }
    };
    if !path.is_empty() && !path.ends_with('/') {
        path.push('/');
    }
    path.push_str(&name);
    Some(path)
}

/// Whether debug info's `path` is the file a `Location` calls `site`: the
/// same, or ending with it after a `/`.
fn same_file(path: &str, site: &str) -> bool {
    path.strip_suffix(site)
        .is_some_and(|rest| rest.is_empty() || rest.ends_with('/') || site.starts_with('/'))
}

/// The running executable, mapped read-only for the rest of the process.
fn map_own_executable() -> Option<&'static [u8]> {
    let file = std::fs::File::open("/proc/self/exe").ok()?;
    let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
    if len == 0 {
        return None;
    }
    // SAFETY: a new private, read-only mapping of `len` bytes of a file we
    // hold open; it aliases no Rust object. The descriptor may be closed
    // afterwards: the mapping keeps the file.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the mapping is `len` readable bytes and is never unmapped, so
    // it outlives every borrow. Its bytes do not change under the slice:
    // it is the running executable, which Linux refuses to open for writing
    // while it runs (ETXTBSY), and which a program that rewrote it in place
    // would break its own code pages with anyway; replacing it on disk (a
    // rename, as installers and cargo do) makes a new file, not this one.
    Some(unsafe { std::slice::from_raw_parts(base.cast::<u8>(), len) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JoinHandle;
    use crate::chan::{Receiver, RecvError, bounded};

    #[test]
    fn files_match_by_path_suffix() {
        assert!(same_file("/work/app/src/main.rs", "src/main.rs"));
        assert!(same_file("src/main.rs", "src/main.rs"));
        assert!(same_file("/abs/src/main.rs", "/abs/src/main.rs"));
        assert!(!same_file("/work/app/src/domain.rs", "main.rs"));
        assert!(!same_file("/work/app/src/main.rs", "other/src/main.rs"));
    }

    /// Spawns a goroutine that waits for `rx` to close.
    #[inline(never)]
    fn spawn_here(rx: Receiver<()>) -> JoinHandle<Result<(), RecvError>> {
        crate::go(move || rx.recv())
    }

    /// What a dump would say created the goroutine of `handle`.
    fn created_by<T>(handle: &JoinHandle<T>) -> Option<&'static str> {
        let id = handle.goroutine().id();
        let info = crate::runtime::goroutines().into_iter().find(|g| g.id == id);
        info.expect("the goroutine is alive").created_by()
    }

    #[test]
    fn names_the_function_that_spawned() {
        let (named, in_closure) = crate::run(|| {
            let (tx, rx) = bounded(0);
            let named = spawn_here(rx.clone());
            let in_closure = crate::go(move || rx.recv());
            let names = (created_by(&named), created_by(&in_closure));
            drop(tx);
            named.join().unwrap().unwrap_err();
            in_closure.join().unwrap().unwrap_err();
            names
        });
        assert_eq!(named, Some("gort::debug::spawn_site::tests::spawn_here"));
        assert_eq!(
            in_closure,
            Some("gort::debug::spawn_site::tests::names_the_function_that_spawned::{{closure}}")
        );
    }
}
