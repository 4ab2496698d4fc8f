package redisstore

// answered is a purpose's answer in a consent record.
func answered(b bool) *bool { return &b }
