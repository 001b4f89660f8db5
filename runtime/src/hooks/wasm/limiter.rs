//! The memory limiter of one hook run: refuses linear-memory growth past the `sandbox.memory_mb` cap and records
//! the refusal, so the outcome can say "memory limit of N MiB exceeded" instead of a bare trap (guests react to a
//! refused `memory.grow` in their own ways; a Rust guest aborts with `unreachable`).

use wasmtime::ResourceLimiter;

/// Most table elements a hook may have. Rust modules use a few hundred; the cap only stops runaway growth.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// A preview-1 hook is one module instance with one memory and one table. A component is several core instances:
/// a `wasm32-wasip2` Rust hook has its code, the preview-1 adapter and the shim and fixup modules wit-component
/// adds (each adapter with its own small memory); a componentize-py hook links libc, libpython and the app as
/// separate modules. 32 instances and 8 memories and tables leave room for those and stop a component that would
/// multiply its memories to get around the per-memory cap.
const MAX_INSTANCES: usize = 32;
const MAX_MEMORIES: usize = 8;
const MAX_TABLES: usize = 8;

/// Caps linear memory and records the first growth it refused.
#[derive(Debug, Clone)]
pub(crate) struct MemoryLimiter {
    cap_bytes: usize,
    refused: Option<usize>,
}

impl MemoryLimiter {
    /// A limiter allowing `cap_mib` MiB per linear memory.
    pub(crate) fn new(cap_mib: u64) -> Self {
        let cap_bytes = usize::try_from(cap_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        Self {
            cap_bytes,
            refused: None,
        }
    }

    /// The size (bytes) of the first growth that was refused, if any.
    pub(crate) fn refused(&self) -> Option<usize> {
        self.refused
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap_bytes {
            self.refused.get_or_insert(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_cap_and_remembers_the_first_refusal() -> wasmtime::Result<()> {
        let mut l = MemoryLimiter::new(2);
        assert!(l.memory_growing(0, 1 << 20, None)?);
        assert!(l.memory_growing(1 << 20, 2 << 20, None)?);
        assert_eq!(l.refused(), None);
        assert!(!l.memory_growing(2 << 20, 3 << 20, None)?);
        assert!(!l.memory_growing(2 << 20, 9 << 20, None)?);
        assert_eq!(l.refused(), Some(3 << 20));
        Ok(())
    }
}
