// Package console is clipgate's operator console, the logic of cmd/console.
package console
