package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/visitord/visitord/internal/visitor"
)

// streamsKey names the places of one API key's open live streams on a site.
func streamsKey(site, keyID string) string { return "ls:{" + site + "}:" + keyID }

// streamHoldScript takes or renews a place among an API key's open live streams.
var streamHoldScript = declare("stream_hold.lua")

// HoldStream takes or renews stream id's place among keyID's open live streams
// of site until until; false when max other streams hold theirs.
func (s *Store) HoldStream(ctx context.Context, site *visitor.Site, keyID, id string, now, until time.Time, max int) (bool, error) {
	n, err := streamHoldScript.Run(ctx, s.c, []string{streamsKey(site.ID, keyID)}, ms(now), ms(until), id, max).Int()
	if err != nil {
		return false, fmt.Errorf("hold stream: %w", translate(err))
	}
	return n == 1, nil
}

// ReleaseStream gives stream id's place back.
func (s *Store) ReleaseStream(ctx context.Context, site *visitor.Site, keyID, id string) error {
	if err := s.c.ZRem(ctx, streamsKey(site.ID, keyID), id).Err(); err != nil {
		return fmt.Errorf("release stream: %w", translate(err))
	}
	return nil
}
