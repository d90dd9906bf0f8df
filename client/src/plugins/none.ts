// Stand-in for `virtual:tabfarm-plugins` when no --plugins module is given.
export {};
