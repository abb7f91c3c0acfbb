//go:build !linux

package main

// renameNoReplace renames oldpath to newpath unless newpath exists (an error matching
// fs.ErrExist), with a link and a removal.
func renameNoReplace(oldpath, newpath string) error { return linkAndRemove(oldpath, newpath) }
