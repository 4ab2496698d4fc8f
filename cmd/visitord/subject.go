package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/visitord/visitord/internal/httpapi"
	"github.com/visitord/visitord/internal/visitor"
)

// subject runs `visitord subject export|erase --site S --visitor V` for privacy
// teams at a shell: the same code path as the API, audited with the key id "cli".
func subject(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	usage := errors.New("usage: visitord subject export|erase --site S (--visitor V | --chat C)")
	if len(args) == 0 {
		return usage
	}
	verb := args[0]
	fs := flag.NewFlagSet("subject "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	siteID := fs.String("site", "", "site id")
	visitorID := fs.String("visitor", "", "visitor id")
	chatID := fs.String("chat", "", "chat id (a chat without identity)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if (verb != "export" && verb != "erase") || *siteID == "" || (*visitorID == "") == (*chatID == "") {
		return usage
	}
	if getenv("VISITORD_REDIS_URL") == "" {
		return errors.New("subject commands need VISITORD_REDIS_URL: the embedded development Redis lives inside a running service")
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := open(ctx, getenv, log, nil)
	if err != nil {
		return err
	}
	defer a.close()
	site, err := a.svc.Sites().Get(*siteID)
	if err != nil {
		return err
	}
	actor := visitor.Actor{Site: site, KeyID: "cli", Role: visitor.RolePrivacy}
	if verb == "erase" {
		if *chatID != "" {
			err = a.svc.EraseChat(ctx, actor, *chatID)
		} else {
			err = a.svc.EraseVisitor(ctx, actor, *visitorID)
		}
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, "erased")
		return err
	}
	var e visitor.Export
	if *chatID != "" {
		e, err = a.svc.ExportChat(ctx, actor, *chatID)
	} else {
		e, err = a.svc.ExportVisitor(ctx, actor, *visitorID)
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(httpapi.ExportDocument(e, a.svc.Now()))
}
