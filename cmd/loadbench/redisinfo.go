package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// commandCalls reads INFO commandstats: the number of calls of each command
// since the last CONFIG RESETSTAT. Commands run by scripts are counted too.
func (r *redisServer) commandCalls() (map[string]int64, error) {
	out, err := r.do("INFO", "commandstats")
	if err != nil {
		return nil, err
	}
	return parseCommandStats(bulkBody(out))
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
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("INFO memory has no used_memory")
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
