#if canImport(Glibc)
import Glibc
#endif

/// glibc's allocator, set for a long-running server that allocates and frees the same
/// working set over and over (a job's buffers, a chunk's event).
///
/// By default glibc gives the top of a heap back to the kernel as soon as 128 KiB of it
/// are free, and each task thread's arena shrinks the same way; the next job then faults
/// the same pages in again, each one cleared by the kernel. A profile of the worker
/// running one-chunk jobs showed that page clearing as its largest single cost. Keeping
/// up to `trimThreshold` free at the top (and growing by `topPad` at a time) keeps the
/// working set mapped; memory is still returned once that much is free.
public enum MallocTuning {
    public static let trimThreshold: Int32 = 64 << 20
    public static let topPad: Int32 = 4 << 20
    /// Setting the trim threshold fixes the mmap threshold too (glibc stops adapting
    /// it), so it is set explicitly: blocks up to this size come from the heaps.
    public static let mmapThreshold: Int32 = 8 << 20

    /// Applies the settings to this process. Call once, early, from a server command.
    /// Does nothing where the C library has no `mallopt`.
    public static func applyForServer() {
        #if canImport(Glibc)
        // `mallopt` is in <malloc.h>, which the Glibc module does not import.
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
        // <malloc.h>: M_TRIM_THRESHOLD -1, M_TOP_PAD -2, M_MMAP_THRESHOLD -3.
        _ = mallopt(-3, mmapThreshold)
        _ = mallopt(-1, trimThreshold)
        _ = mallopt(-2, topPad)
        #endif
    }
}
