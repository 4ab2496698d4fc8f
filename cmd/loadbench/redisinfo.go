package main

import (
	"fmt"
	"strconv"
	"strings"
)

// nodeReading is what one redis-server reports at one end of a measured
// window: its commands (INFO commandstats) and its reads from clients.
type nodeReading struct {
	calls map[string]int64
	reads int64 // total_reads_processed
}

// reading reads INFO stats and commandstats of r in one reply. The calls are
// those of each command since the last CONFIG RESETSTAT, commands run by
// scripts included.
func (r *redisServer) reading() (nodeReading, error) {
	out, err := r.do("INFO", "stats", "commandstats")
	if err != nil {
		return nodeReading{}, err
	}
	info := bulkBody(out)
	calls, err := parseCommandStats(info)
	if err != nil {
		return nodeReading{}, err
	}
	reads, err := parseReadsProcessed(info)
	if err != nil {
		return nodeReading{}, err
	}
	return nodeReading{calls: calls, reads: reads}, nil
}

// parseReadsProcessed reads total_reads_processed of INFO stats: the reads
// from client connections the server has processed, each one batch of
// commands (a pipeline that arrives together is one read), so its delta per
// response is the round trips to Redis per request. Each reading of the
// bench adds its own read and the read of its connection's close, two per
// measured window: negligible against the responses of a window.
func parseReadsProcessed(info string) (int64, error) {
	return infoInt(info, "total_reads_processed")
}

// parseCommandStats parses the lines "cmdstat_<name>:calls=N,usec=..." of
// INFO commandstats into calls per command (sub-commands as "config|get").
func parseCommandStats(info string) (map[string]int64, error) {
	calls := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		rest, ok := strings.CutPrefix(line, "cmdstat_")
		if !ok {
			continue
		}
		name, fields, ok := strings.Cut(rest, ":")
		if !ok {
			return nil, fmt.Errorf("commandstats line %q", line)
		}
		var found bool
		for _, kv := range strings.Split(fields, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("commandstats %s: %w", name, err)
				}
				calls[name] = n
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("commandstats %s: no calls", name)
		}
	}
	return calls, nil
}

// benchCommands are the commands the bench itself sends to Redis while it
// measures; they are left out of the commands per page view. Its wipe
// between runs (flush) happens before the measured window.
var benchCommands = map[string]bool{"info": true}

// callsBetween is the number of commands of the targets run between two
// INFO commandstats readings, in total and per command.
func callsBetween(before, after map[string]int64) (int64, map[string]int64) {
	var total int64
	per := map[string]int64{}
	for name, n := range after {
		if benchCommands[name] {
			continue
		}
		if d := n - before[name]; d > 0 {
			per[name] = d
			total += d
		}
	}
	return total, per
}

// usedMemory reads used_memory of INFO memory.
func (r *redisServer) usedMemory() (int64, error) {
	out, err := r.do("INFO", "memory")
	if err != nil {
		return 0, err
	}
	return parseUsedMemory(bulkBody(out))
}

func parseUsedMemory(info string) (int64, error) {
	return infoInt(info, "used_memory")
}

// infoInt reads the integer field of an INFO or CLUSTER INFO reply.
func infoInt(info, field string) (int64, error) {
	v, ok := infoFields(info)[field]
	if !ok {
		return 0, fmt.Errorf("INFO has no %s", field)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("INFO %s: %w", field, err)
	}
	return n, nil
}

// infoFields reads the "field:value" lines of an INFO or CLUSTER INFO reply.
func infoFields(info string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(k, "#") {
			m[k] = v
		}
	}
	return m
}

// bulkBody strips the "$<len>\r\n" header of a RESP bulk reply.
func bulkBody(reply string) string {
	if strings.HasPrefix(reply, "$") {
		if _, body, ok := strings.Cut(reply, "\r\n"); ok {
			return body
		}
	}
	return reply
}
