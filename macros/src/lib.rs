//! `#[gort::main]` and `#[gort::test]`: a function's body becomes the main
//! goroutine of a gort runtime, the way `#[tokio::main]` makes it a task.
//!
//! The expansion is a plain function that builds the runtime from the
//! options (each one a `Builder` call of the same name), runs the body with
//! `Runtime::block_on`, and turns what the body returned into the
//! function's result. Three choices shape it:
//!
//! - The body's value is reported *inside* the goroutine
//!   (`Termination::report`, what std does with `main`'s value), and only
//!   the `ExitCode` crosses back to the calling thread: a `main` may return
//!   `Result<(), Box<dyn Error>>`, which is not `Send`.
//! - `main` without options runs on the default runtime (`gort::run`), so
//!   `gort::go` from any thread finds the same one; with options it builds
//!   its own and never drops it: when `main` returns the process ends, as
//!   Go's does, without waiting for goroutines still running.
//! - Every test builds its own runtime and drops it at the end: tests run
//!   in parallel, and a leak check (`leak_check = true`) must see only its
//!   own test's goroutines.
//!
//! Options take literals only, so a wrong type or an unknown name is a
//! compile error pointing at the option rather than a type error inside
//! the expansion. `async fn`, parameters and generics are refused with a
//! message that says why.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ItemFn, Lit, MetaNameValue, ReturnType, Token};

/// How long a `leak_check` waits for goroutines that are finishing.
const LEAK_GRACE_MS: u64 = 1000;

/// Run `main`'s body as the main goroutine of a gort runtime.
///
/// Without options the body runs on the default runtime (`gort::run`).
/// Options build a runtime of its own: `procs = 4`, `chaos = 7`,
/// `stack_size = 65536`, `max_threads = 100`, `name = "app"`,
/// `detect_deadlocks = false`, `unjoined_panic_exits = true` — each the
/// `gort::runtime::Builder` call of that name. `main` may return anything
/// std's `main` may (`()`, `Result<(), E>` with `E: Debug`, `ExitCode`).
///
/// Examples are in gort's documentation of `gort::main`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Main, args.into(), item.into()).into()
}

/// Run a test's body as the main goroutine of a runtime of its own.
///
/// Takes `#[gort::main]`'s options, plus `leak_check = true`: after the
/// body, fail the test if any goroutine it started is still alive a second
/// later (`Runtime::check_leaks`), with their stacks in the message. Other
/// attributes (`should_panic`, `ignore`) apply as usual.
///
/// Examples are in gort's documentation of `gort::test`.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Test, args.into(), item.into()).into()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Main,
    Test,
}

impl Kind {
    fn attr(self) -> &'static str {
        match self {
            Kind::Main => "#[gort::main]",
            Kind::Test => "#[gort::test]",
        }
    }
}

/// The value an option takes, which decides the literal it accepts.
#[derive(Clone, Copy)]
enum Type {
    Int,
    Bool,
    Str,
}

/// Every option: its name, its type, and whether `#[gort::main]` takes it.
const OPTIONS: &[(&str, Type, bool)] = &[
    ("procs", Type::Int, true),
    ("chaos", Type::Int, true),
    ("stack_size", Type::Int, true),
    ("max_threads", Type::Int, true),
    ("name", Type::Str, true),
    ("detect_deadlocks", Type::Bool, true),
    ("unjoined_panic_exits", Type::Bool, true),
    ("leak_check", Type::Bool, false),
];

fn expand(kind: Kind, args: TokenStream2, item: TokenStream2) -> TokenStream2 {
    match try_expand(kind, args, item.clone()) {
        Ok(tokens) => tokens,
        Err(e) => {
            // A plain stand-in for the function, so that the error above is
            // the only one (no "`main` function not found" after it).
            let error = e.to_compile_error();
            match syn::parse2::<ItemFn>(item) {
                Ok(func) => {
                    let (vis, ident) = (&func.vis, &func.sig.ident);
                    quote!(#error #[allow(dead_code)] #vis fn #ident() {})
                }
                Err(_) => error,
            }
        }
    }
}

fn try_expand(kind: Kind, args: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let options = Punctuated::<MetaNameValue, Token![,]>::parse_terminated
        .parse2(args)
        .map_err(|e| {
            syn::Error::new(
                e.span(),
                format!(
                    "{}: options are `name = value` pairs separated by commas, e.g. `procs = 4`",
                    kind.attr()
                ),
            )
        })?;
    let func: ItemFn = syn::parse2(item)?;
    check_signature(kind, &func)?;

    let mut calls = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut leak_check = false;
    for option in &options {
        let name = option
            .path
            .get_ident()
            .map(ToString::to_string)
            .ok_or_else(|| syn::Error::new(option.path.span(), unknown(kind, "this")))?;
        let Some(&(_, ty, in_main)) = OPTIONS.iter().find(|(n, _, _)| *n == name) else {
            return Err(syn::Error::new(option.path.span(), unknown(kind, &format!("`{name}`"))));
        };
        if kind == Kind::Main && !in_main {
            return Err(syn::Error::new(
                option.path.span(),
                format!("`{name}` is an option of #[gort::test], not of #[gort::main]"),
            ));
        }
        if seen.contains(&name) {
            return Err(syn::Error::new(option.path.span(), format!("`{name}` is given twice")));
        }
        seen.push(name.clone());
        let lit = literal(&option.value, &name, ty)?;
        if name == "leak_check" {
            leak_check = matches!(lit, Lit::Bool(b) if b.value);
            continue;
        }
        if name == "procs"
            && let Lit::Int(n) = lit
            && n.base10_parse::<u64>()? == 0
        {
            return Err(syn::Error::new(lit.span(), "`procs` must be at least 1"));
        }
        let method = syn::Ident::new(&name, option.path.span());
        calls.push(quote_spanned!(lit.span()=> .#method(#lit)));
    }

    let ItemFn {
        attrs, vis, sig, block, ..
    } = func;
    let ident = &sig.ident;
    // A unit body stays a unit function (`#[should_panic]` requires it);
    // any other value is reported as std reports `main`'s (module header).
    let (closure, report, ret) = match &sig.output {
        ReturnType::Default => (quote!(move || #block), quote!(value), quote!()),
        ReturnType::Type(_, ty) => (
            quote!(move || -> #ty #block),
            quote!(::std::process::Termination::report(value)),
            quote!(-> ::std::process::ExitCode),
        ),
    };
    let leak_check = leak_check.then(|| {
        quote! {
            if let ::core::result::Result::Err(leaks) =
                ::gort::runtime::check_leaks(::core::time::Duration::from_millis(#LEAK_GRACE_MS))
            {
                ::core::panic!("#[gort::test(leak_check = true)]: {leaks}");
            }
        }
    });
    let body = quote! {
        move || {
            #[allow(clippy::needless_return)]
            let body = #closure;
            let value = body();
            #leak_check
            #report
        }
    };
    let attr = kind.attr();
    let run = match kind {
        Kind::Main if calls.is_empty() => quote!(::gort::run(#body)),
        Kind::Main => quote! {{
            let runtime = ::gort::Runtime::builder() #(#calls)* .build()
                .unwrap_or_else(|e| ::core::panic!("{}: {e}", #attr));
            // Never dropped: the process ends with `main`, whatever still runs.
            let runtime: &'static ::gort::Runtime = ::std::boxed::Box::leak(::std::boxed::Box::new(runtime));
            runtime.block_on(#body)
        }},
        Kind::Test => quote! {{
            let runtime = ::gort::Runtime::builder() #(#calls)* .build()
                .unwrap_or_else(|e| ::core::panic!("{}: {e}", #attr));
            runtime.block_on(#body)
        }},
    };
    let test_attr = (kind == Kind::Test).then(|| quote!(#[::core::prelude::v1::test]));
    Ok(quote! {
        #test_attr
        #(#attrs)*
        #vis fn #ident() #ret {
            #run
        }
    })
}

/// Refuse what a runtime's main goroutine cannot be.
fn check_signature(kind: Kind, func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    let attr = kind.attr();
    if let Some(token) = &sig.asyncness {
        return Err(syn::Error::new(
            token.span(),
            format!(
                "{attr} takes a plain `fn`, not an `async fn`: its body runs as a goroutine, where blocking calls are fine; remove `async`"
            ),
        ));
    }
    if !sig.inputs.is_empty() {
        return Err(syn::Error::new(
            sig.inputs.span(),
            format!("{attr} functions take no arguments"),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            format!("{attr} functions cannot be generic"),
        ));
    }
    if sig.constness.is_some() || sig.unsafety.is_some() || sig.abi.is_some() || sig.variadic.is_some() {
        return Err(syn::Error::new(
            sig.fn_token.span(),
            format!("{attr} takes a plain `fn` (not const, unsafe or extern)"),
        ));
    }
    Ok(())
}

/// The option's value, if it is a literal of type `ty`.
fn literal<'a>(value: &'a Expr, name: &str, ty: Type) -> syn::Result<&'a Lit> {
    let (wanted, example) = match ty {
        Type::Int => ("an integer", "4"),
        Type::Bool => ("`true` or `false`", "true"),
        Type::Str => ("a string", "\"worker\""),
    };
    if let Expr::Lit(ExprLit { lit, .. }) = value {
        match (ty, lit) {
            (Type::Int, Lit::Int(n)) if n.suffix().is_empty() => return Ok(lit),
            (Type::Bool, Lit::Bool(_)) | (Type::Str, Lit::Str(_)) => return Ok(lit),
            _ => {}
        }
    }
    Err(syn::Error::new(
        value.span(),
        format!("`{name}` takes {wanted} literal, e.g. `{name} = {example}`"),
    ))
}

fn unknown(kind: Kind, what: &str) -> String {
    let names: Vec<&str> = OPTIONS
        .iter()
        .filter(|(_, _, in_main)| kind == Kind::Test || *in_main)
        .map(|(n, _, _)| *n)
        .collect();
    format!(
        "unknown option {what} of {}; expected one of: {}",
        kind.attr(),
        names.join(", ")
    )
}
