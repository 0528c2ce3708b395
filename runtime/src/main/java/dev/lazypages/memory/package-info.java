/**
 * Memory of a live process as page sets: {@link dev.lazypages.memory.PageRanges} (sorted page
 * runs with set operations) and dirty tracking for pre-copy
 * ({@link dev.lazypages.memory.DirtyTracker}: PAGEMAP_SCAN with a write-protect-async
 * userfaultfd, soft-dirty bits, or none), chosen by {@link dev.lazypages.memory.DirtyTrackers}.
 * Sits under {@code dump}, over {@code proc} and the ffm facade.
 */
package dev.lazypages.memory;
