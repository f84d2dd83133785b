/// Conversions that never trap, for numbers that come from outside: a job, a header, a
/// provider's usage, the config. `Int64(x)` on a Double traps on NaN, on infinity and
/// beyond ±9.2e18; these clamp instead.
extension FixedWidthInteger {
    /// `value` rounded toward zero, clamped to the type's range; NaN is 0.
    @inlinable
    public init(saturating value: Double) {
        if value.isNaN {
            self = 0
        } else if let exact = Self(exactly: value.rounded(.towardZero)) {
            self = exact
        } else {
            self = value < 0 ? .min : .max
        }
    }

    /// `self + other`, clamped to the type's range.
    @inlinable
    public func adding(saturating other: Self) -> Self {
        let (sum, overflow) = addingReportingOverflow(other)
        guard overflow else { return sum }
        return other < 0 ? .min : .max
    }
}

extension Duration {
    /// `seconds` as a duration, to the millisecond: NaN and negative values are zero,
    /// anything beyond `Int64.max` milliseconds (292 million years) is that.
    @inlinable
    public static func seconds(saturating seconds: Double) -> Duration {
        guard seconds > 0 else { return .zero }
        return .milliseconds(Int64(saturating: (seconds * 1000).rounded(.up)))
    }
}
