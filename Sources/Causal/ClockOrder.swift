/// How two vector clocks relate in the happened-before order.
public enum ClockOrder: Sendable, Hashable {
    /// Every entry of the left clock is at most the right one's and some entry is smaller:
    /// the left event happened before the right one.
    case before
    /// The right event happened before the left one.
    case after
    /// The clocks are equal (after padding the narrower one with zeros).
    case equal
    /// Neither happened before the other: each clock has an entry larger than the other's.
    case concurrent

    /// The order seen from the other side: `a.compare(b).reversed == b.compare(a)`.
    public var reversed: ClockOrder {
        switch self {
        case .before: .after
        case .after: .before
        case .equal, .concurrent: self
        }
    }

    /// The order of two clocks whose parts compare as `self` and `other`
    /// (for example a common prefix and a tail).
    func combined(with other: ClockOrder) -> ClockOrder {
        switch (self, other) {
        case (.equal, _): other
        case (_, .equal): self
        case _ where self == other: self
        default: .concurrent
        }
    }
}

extension ClockOrder: CustomStringConvertible {
    /// `"before"`, `"after"`, `"equal"` or `"concurrent"`.
    public var description: String {
        switch self {
        case .before: "before"
        case .after: "after"
        case .equal: "equal"
        case .concurrent: "concurrent"
        }
    }
}
