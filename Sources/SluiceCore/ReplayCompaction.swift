/// What a finished job's replay stream keeps: its lifecycle events (`chat_started`,
/// `chat_completion_request`, the final response or failure, `chat_finished`) with their
/// ids and seqs, and not its chunks, whose content the final response carries whole.
/// Without it a job of a hundred chunks would hold some 40 KB of Redis for
/// `redis.event_ttl_s`; with it a few KB.
///
/// One `EVAL` (`compactScript`), queued by the run that finishes the job right after its
/// `chat_finished`, so it runs after every event of the run and before anything else
/// touches the stream:
///
/// - it leaves the stream alone if another run holds the job's run claim;
/// - it reads the stream a page at a time, keeping every entry whose event is not
///   `chunk`, deletes the stream and adds the kept entries back with their own ids (an
///   `XDEL` only marks entries deleted: their bytes stay in the stream's nodes);
/// - it replaces the stream with a `RESTORE` of its own `DUMP`: a stream written entry by
///   entry holds a node of 4 KiB whatever it holds (Redis allocates that much ahead), a
///   restored one only its entries. A Redis whose ACL forbids `DUMP` or `RESTORE`
///   keeps the rebuilt stream;
/// - the stream keeps its TTL.
///
/// A reader that resumes after an id inside the removed chunks gets the next kept event.
public enum ReplayCompaction {
    /// `EVAL compactScript 2 events run-claim run`. Answers the number of chunk entries
    /// removed, or -1 when another run holds the claim.
    public static let compactScript = """
        local holder = redis.call('GET', KEYS[2])
        if holder and holder ~= ARGV[1] then return -1 end
        local ttl = redis.call('PTTL', KEYS[1])
        if ttl == -2 then return 0 end
        local kept, removed, cursor = {}, 0, '-'
        while true do
          local page = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', 512)
          for _, entry in ipairs(page) do
            -- The envelope's first "event" key is its own: the job id and run before it
            -- cannot hold a quote, and data comes after it.
            local value = entry[2][2]
            local at = string.find(value, '"event":"', 1, true)
            if at and string.sub(value, at + 9, at + 14) == 'chunk"' then
              removed = removed + 1
            else
              kept[#kept + 1] = entry
            end
          end
          if #page < 512 then break end
          cursor = '(' .. page[#page][1]
        end
        if removed > 0 then
          redis.call('DEL', KEYS[1])
          for _, entry in ipairs(kept) do redis.call('XADD', KEYS[1], entry[1], unpack(entry[2])) end
          if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
        end
        local dump = redis.pcall('DUMP', KEYS[1])
        if type(dump) == 'string' then
          redis.pcall('RESTORE', KEYS[1], math.max(ttl, 0), dump, 'REPLACE')
        end
        return removed
        """

    /// The arguments of `EVAL` for compacting `jobID`'s replay at the end of `run`.
    public static func arguments(jobID: String, run: String) -> [String] {
        ["EVAL", compactScript, "2", RedisKeys.events(jobID), RedisKeys.run(jobID), run]
    }
}
