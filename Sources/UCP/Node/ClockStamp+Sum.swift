extension ClockStamp {
    /// The sum of the clock's entries, saturating at `Int64.max` (it is stored in SQLite): the
    /// first key of the total orders that extend the causal one (``RowVersion``,
    /// ``ResultLedger/earlier(_:_:)``). An event after another has the larger sum, unless both
    /// saturate, which only entries a member forged can make; ties then fall to the orders'
    /// next keys. Entries come from the network, so the sum never wraps.
    public var entrySum: UInt64 {
        var sum: UInt64 = 0
        for value in clock.values {
            let (next, overflow) = sum.addingReportingOverflow(value)
            guard !overflow, next <= UInt64(Int64.max) else { return UInt64(Int64.max) }
            sum = next
        }
        return sum
    }
}
