package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/clipgate/clipgate/devicekit"
)

type credentialsCmd struct {
	ShowSecret bool `help:"Also print the access key secret and the security token."`
	JSON       bool `name:"json" help:"Print one JSON object instead of text."`
}

// credentialsView is what the credentials command prints.
type credentialsView struct {
	Device          string    `json:"device"`
	Bucket          string    `json:"bucket"`
	Prefix          string    `json:"prefix"` // the device's own prefix, where it may write
	Endpoint        string    `json:"endpoint"`
	Region          string    `json:"region"`
	Mode            string    `json:"mode"`
	AccessKeyID     string    `json:"accessKeyId"`
	Expiration      time.Time `json:"expiration"`
	AccessKeySecret string    `json:"accessKeySecret,omitempty"`
	SecurityToken   string    `json:"securityToken,omitempty"`
}

// credentials gets the device's credentials and prints their scope and expiry; the
// secret and the token only with --show-secret.
func (m *Main) credentials(ctx context.Context) error {
	kit, kc, err := m.connect(ctx)
	if err != nil {
		return err
	}
	defer kit.Close()
	cctx, cancel := context.WithTimeout(ctx, m.cli.Timeout)
	defer cancel()
	c, err := kit.Credentials(cctx)
	if err != nil {
		return err
	}
	mode := kc.Mode
	if mode == "" {
		mode = devicekit.DefaultMode
	}
	v := credentialsView{
		Device:      kc.DeviceID,
		Bucket:      c.OSS.Bucket,
		Prefix:      devicePrefix(c.OSS.Prefix, kc.DeviceID),
		Endpoint:    c.OSS.Endpoint,
		Region:      c.OSS.Region,
		Mode:        string(mode),
		AccessKeyID: c.AccessKeyID,
		Expiration:  c.Expiration.UTC(),
	}
	if m.cli.Credentials.ShowSecret {
		v.AccessKeySecret, v.SecurityToken = c.AccessKeySecret, c.SecurityToken
	}
	if m.cli.Credentials.JSON {
		enc := json.NewEncoder(m.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(&v)
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "device:\t%s\n", v.Device)
	fmt.Fprintf(tw, "bucket:\t%s\n", v.Bucket)
	fmt.Fprintf(tw, "prefix:\t%s\n", v.Prefix)
	fmt.Fprintf(tw, "endpoint:\t%s\n", v.Endpoint)
	fmt.Fprintf(tw, "region:\t%s\n", v.Region)
	fmt.Fprintf(tw, "mode:\t%s\n", v.Mode)
	fmt.Fprintf(tw, "access key id:\t%s\n", v.AccessKeyID)
	fmt.Fprintf(tw, "expires:\t%s (in %s)\n", v.Expiration.Format(time.RFC3339), time.Until(v.Expiration).Round(time.Second))
	if m.cli.Credentials.ShowSecret {
		fmt.Fprintf(tw, "access key secret:\t%s\n", v.AccessKeySecret)
		fmt.Fprintf(tw, "security token:\t%s\n", v.SecurityToken)
	} else {
		fmt.Fprintf(tw, "access key secret:\t(hidden; --show-secret prints it)\n")
		fmt.Fprintf(tw, "security token:\t(hidden; --show-secret prints it)\n")
	}
	return tw.Flush()
}

// devicePrefix is the device's own key prefix from the prefix of an auth reply, which is
// either already the device's ({global}{deviceID}/) or the global one (devicekit does the
// same).
func devicePrefix(prefix, deviceID string) string {
	tail := deviceID + "/"
	if strings.HasSuffix(prefix, tail) && (len(prefix) == len(tail) || prefix[len(prefix)-len(tail)-1] == '/') {
		return prefix
	}
	return prefix + tail
}
