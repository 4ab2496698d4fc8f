package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: the
// kernel reports them in 1/100 s on every architecture Go builds for Linux.
const clockTicks = 100

// cpuTicks is the CPU time, user plus system and in clock ticks, that the
// process pid has used, all threads together, read from /proc/<pid>/stat.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStat(string(b))
}

// parseStat returns utime+stime (fields 14 and 15) of a /proc/<pid>/stat line.
// The command name (field 2) is in parentheses and may hold spaces and
// parentheses itself, so fields are counted from the last ')'.
func parseStat(s string) (int64, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("proc stat: no command name")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("proc stat: %d fields after the command name", len(f))
	}
	utime, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat utime: %w", err)
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("proc stat stime: %w", err)
	}
	return utime + stime, nil
}

// listensOn reports whether process pid holds the listening TCP socket of
// port: the socket's inode, from /proc/net/tcp and tcp6, is one of the
// process's open files. It is how the bench knows that the process answering
// on a port is the one it started, not another that had taken the port.
func listensOn(pid, port int) (bool, error) {
	inodes := map[string]bool{}
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(name)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return false, err
		}
		found, err := listeningInodes(f, port)
		f.Close()
		if err != nil {
			return false, fmt.Errorf("%s: %w", name, err)
		}
		for _, in := range found {
			inodes[in] = true
		}
	}
	if len(inodes) == 0 {
		return false, nil
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // the process has gone
	}
	if err != nil {
		return false, err
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(dir, fd.Name()))
		if err != nil {
			continue // closed since the listing
		}
		if in, ok := strings.CutPrefix(target, "socket:["); ok && inodes[strings.TrimSuffix(in, "]")] {
			return true, nil
		}
	}
	return false, nil
}

// listeningInodes returns the inodes of the sockets in LISTEN state on port in
// a /proc/net/tcp table ("sl local_address rem_address st ... inode").
func listeningInodes(r io.Reader, port int) ([]string, error) {
	const listen = "0A"
	want := fmt.Sprintf(":%04X", port)
	var out []string
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			return nil, fmt.Errorf("line of %d fields", len(f))
		}
		if f[3] == listen && strings.HasSuffix(f[1], want) {
			out = append(out, f[9])
		}
	}
	return out, sc.Err()
}
